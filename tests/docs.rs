//! The docs cannot rot: every relative link of the README and the docs resolves, the layout table
//! of docs/development.md names exactly the files and directories under `src/`, and the endpoint
//! table of docs/api.md names every endpoint of the OpenAPI document with exactly the statuses the
//! document declares for it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Parser, Tag, TagEnd};
use regex::Regex;

#[path = "support/pages.rs"]
mod pages;
use pages::section;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The pages whose links must resolve: the README, every page of docs/, and the READMEs of the
/// sandbox, the examples and the chart.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = [
        "README.md",
        "sandbox/README.md",
        "examples/README.md",
        "charts/channel-operator/README.md",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    for entry in std::fs::read_dir(Path::new(ROOT).join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path.strip_prefix(ROOT).unwrap().to_owned());
        }
    }
    pages.sort();
    pages
}

fn read(page: &Path) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(page))
        .unwrap_or_else(|e| panic!("reading {}: {e}", page.display()))
}

/// The anchors GitHub gives a page's headings: the heading's text, lower-cased, without the
/// characters that are not letters, marks, digits, `_`, `-` or spaces, spaces turned into `-`;
/// a repeated anchor gets `-1`, `-2`, ….
fn anchors(markdown: &str) -> BTreeSet<String> {
    let drop = Regex::new(r"[^\p{L}\p{M}\p{N}\p{Pc} -]").unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    let mut heading: Option<String> = None;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let text = heading.take().unwrap();
                let slug = drop.replace_all(&text.to_lowercase(), "").replace(' ', "-");
                let n = seen.entry(slug.clone()).or_default();
                anchors.insert(if *n == 0 {
                    slug.clone()
                } else {
                    format!("{slug}-{n}")
                });
                *n += 1;
            }
            _ => {}
        }
    }
    anchors
}

/// The targets of a page's links and images, as written.
fn links(markdown: &str) -> Vec<String> {
    Parser::new(markdown)
        .filter_map(|event| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                Some(dest_url.to_string())
            }
            _ => None,
        })
        .collect()
}

/// `path` with `.` and `..` taken away, or `None` when it climbs above its start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            _ => return None,
        }
    }
    Some(out)
}

#[test]
fn every_relative_link_resolves() {
    let scheme = Regex::new(r"^[a-zA-Z][a-zA-Z0-9+.-]*:").unwrap();
    let mut checked = 0;
    let mut broken = vec![];
    for page in pages() {
        let text = read(&page);
        for link in links(&text) {
            if scheme.is_match(&link) {
                continue;
            }
            checked += 1;
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                Some(page.clone())
            } else {
                normalize(&page.parent().unwrap().join(file))
            };
            let Some(target) = target else {
                broken.push(format!("{}: {link} leaves the repository", page.display()));
                continue;
            };
            if !Path::new(ROOT).join(&target).exists() {
                broken.push(format!(
                    "{}: {link}: no {}",
                    page.display(),
                    target.display()
                ));
                continue;
            }
            if anchor.is_empty() {
                continue;
            }
            if target.extension().is_none_or(|e| e != "md") {
                broken.push(format!(
                    "{}: {link}: an anchor into a file that is not a page",
                    page.display()
                ));
            } else if !anchors(&read(&target)).contains(anchor) {
                broken.push(format!(
                    "{}: {link}: {} has no heading #{anchor}",
                    page.display(),
                    target.display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 30, "the pages' links were read: {checked}");
}

#[test]
fn github_anchors_are_computed_as_github_does() {
    let page = "# The channels HTTP API\n\n## Pinned ids (`spec.channelId`)\n\n```sh\n# not a heading\n```\n\n## `channel-operator dev`\n\n## Flags\n\n## Flags\n";
    let want: BTreeSet<String> = [
        "the-channels-http-api",
        "pinned-ids-specchannelid",
        "channel-operator-dev",
        "flags",
        "flags-1",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(anchors(page), want);
}

/// The HTTP statuses a piece of text names.
fn statuses(text: &str) -> BTreeSet<String> {
    Regex::new(r"\b[1-5][0-9]{2}\b")
        .unwrap()
        .find_iter(text)
        .map(|m| m.as_str().to_owned())
        .collect()
}

/// `channels.{a,b}.disconnect` → `channels.a.disconnect`, `channels.b.disconnect`.
fn expand(name: &str) -> Vec<String> {
    match (name.find('{'), name.find('}')) {
        (Some(open), Some(close)) => name[open + 1..close]
            .split(',')
            .map(|part| format!("{}{part}{}", &name[..open], &name[close + 1..]))
            .collect(),
        _ => vec![name.to_owned()],
    }
}

#[test]
fn the_endpoint_table_of_docs_api_is_the_openapi_document() {
    let document: serde_json::Value =
        serde_json::from_str(&channel_operator::api::openapi::document_json()).unwrap();
    let declared: BTreeMap<String, BTreeSet<String>> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let responses = item["post"]["responses"].as_object().unwrap();
            (path.clone(), responses.keys().cloned().collect())
        })
        .collect();

    let page = read(Path::new("docs/api.md"));
    let glance = section(&page, "Endpoints at a glance");
    let also = glance
        .split("\n\n")
        .find(|p| p.starts_with("Every endpoint may also answer"))
        .map(statuses)
        .expect("the statuses every endpoint may also answer");
    let name = Regex::new(r"`(channels\.[^`]+)`").unwrap();
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in glance.lines().filter(|l| l.starts_with("| `channels.")) {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        assert_eq!(
            cells.len(),
            4,
            "endpoint | request | success | errors: {row}"
        );
        let mut answers = statuses(cells[2]);
        answers.extend(statuses(cells[3]));
        answers.extend(also.iter().cloned());
        for endpoint in name.captures_iter(cells[0]).flat_map(|c| expand(&c[1])) {
            let path = format!("/{endpoint}");
            assert!(
                documented.insert(path.clone(), answers.clone()).is_none(),
                "{path} has two rows"
            );
        }
    }
    let rows: BTreeSet<&String> = documented.keys().collect();
    let paths: BTreeSet<&String> = declared.keys().collect();
    assert_eq!(
        rows, paths,
        "the table's endpoints against the document's paths"
    );
    for (path, answers) in &declared {
        assert_eq!(
            &documented[path], answers,
            "docs/api.md's statuses of {path} against the OpenAPI document's"
        );
    }
}

/// Every file and directory under `dir` (relative to the repository), depth first.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(Path::new(ROOT).join(dir)).unwrap() {
        let path = dir.join(entry.unwrap().file_name());
        if Path::new(ROOT).join(&path).is_dir() {
            found.extend(tree(&path));
        }
        found.insert(path);
    }
    found
}

#[test]
fn the_layout_table_of_docs_development_is_src() {
    let page = read(Path::new("docs/development.md"));
    let layout = section(&page, "Layout");
    let code = Regex::new(r"`([^`]+)`").unwrap();
    // In a directory's row, `x.rs`, `x/` and `x/y.rs` name what is in that directory.
    let relative = Regex::new(r"^[a-z0-9_]+(/[a-z0-9_]+)*(\.rs|/)$").unwrap();
    let mut named = BTreeSet::new();
    let mut missing = vec![];
    for row in layout.lines().filter(|l| l.starts_with("| `")) {
        let (paths, what) = row[1..].split_once(" | ").expect("path | what");
        for path in code.captures_iter(paths).map(|c| c[1].to_owned()) {
            if !Path::new(ROOT).join(&path).exists() {
                missing.push(path.clone());
            }
            if !path.starts_with("src/") {
                continue;
            }
            named.insert(PathBuf::from(path.trim_end_matches('/')));
            if !path.ends_with('/') {
                continue;
            }
            for name in code.captures_iter(what).map(|c| c[1].to_owned()) {
                if relative.is_match(&name) {
                    let inside = format!("{path}{name}");
                    if !Path::new(ROOT).join(&inside).exists() {
                        missing.push(inside.clone());
                    }
                    named.insert(PathBuf::from(inside.trim_end_matches('/')));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/development.md names what is not there: {missing:?}"
    );
    // A directory is named with what is named in it.
    let named: BTreeSet<&Path> = named.iter().flat_map(|p| p.ancestors()).collect();
    let unnamed: Vec<_> = tree(Path::new("src"))
        .into_iter()
        .filter(|p| !named.contains(p.as_path()))
        .collect();
    assert!(
        unnamed.is_empty(),
        "docs/development.md's layout table does not name {unnamed:?}"
    );
}

//! Reading the project's Markdown pages in tests.

/// The section of `page` that starts with the heading `## {title}`, up to the next `## `.
pub fn section<'a>(page: &'a str, title: &str) -> &'a str {
    let start = page
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("no section {title:?}"));
    let rest = &page[start + 1..];
    &rest[..rest[3..].find("\n## ").map_or(rest.len(), |n| n + 3)]
}

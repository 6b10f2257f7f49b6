//! What the README and the docs tell a user to type works, and what they claim about the CLI is so.
//! Each command block is checked on the page that holds it: the Helm walk-through in README.md,
//! the flag table in docs/configuration.md.

mod support;

use support::section;

use std::collections::BTreeSet;
use std::path::Path;

use regex::Regex;

const README: &str = include_str!("../README.md");
const CONFIGURATION: &str = include_str!("../docs/configuration.md");
const BIN: &str = env!("CARGO_BIN_EXE_channel-operator");

/// The `sh` code blocks of a piece of a page, in order.
fn sh_blocks(text: &str) -> Vec<&str> {
    text.split("```sh\n")
        .skip(1)
        .map(|b| &b[..b.find("```").expect("closed code block")])
        .collect()
}

/// The shell commands of a block: continuation lines joined, comments and blank lines dropped.
fn commands(block: &str) -> Vec<String> {
    let joined = block.replace("\\\n", " ");
    joined
        .lines()
        .map(|l| l.split("   # ").next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// `--help` of a command, split into one block per option, keyed by the long flag.
fn options(command: &str) -> Vec<(String, String)> {
    let out = std::process::Command::new(BIN)
        .args([command, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{command} --help");
    let help = String::from_utf8(out.stdout).unwrap();
    let start = Regex::new(r"^\s{2,}(?:-\w, )?--([a-z0-9-]+)").unwrap();
    let mut blocks: Vec<(String, String)> = vec![];
    for line in help.lines() {
        if let Some(m) = start.captures(line) {
            blocks.push((m[1].to_owned(), String::new()));
        }
        // Description lines (and `[env: ...]`, `[default: ...]`) belong to the last option.
        if let Some((_, text)) = blocks.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    blocks
}

#[test]
fn configuration_reference_matches_each_commands_help() {
    // The page is one table under its title.
    let table = CONFIGURATION;
    let row =
        Regex::new(r"^\| `--([a-z0-9-]+)`(?: \[([A-Z_]+)\])? \| [^|]* \| ([a-z, ]+) \|").unwrap();
    let mut checked = BTreeSet::new();
    for line in table.lines() {
        let Some(m) = row.captures(line) else {
            continue;
        };
        let (flag, env, used_by) = (
            m[1].to_owned(),
            m.get(2).map(|e| e.as_str().to_owned()),
            m[3].to_owned(),
        );
        let commands: Vec<&str> = if used_by.trim() == "all" {
            vec!["controller", "api", "dev"]
        } else {
            used_by.split(", ").map(str::trim).collect()
        };
        for command in commands {
            let help = options(command);
            let (_, text) = help.iter().find(|(f, _)| *f == flag).unwrap_or_else(|| {
                panic!("docs/configuration.md: `{command}` takes --{flag}; its --help does not list it")
            });
            match &env {
                Some(env) => assert!(
                    text.contains(&format!("[env: {env}="))
                        || text.contains(&format!("[env: {env}]")),
                    "docs/configuration.md: `{command} --{flag}` reads {env}; its --help says:\n{text}"
                ),
                None => assert!(
                    !text.contains("[env:"),
                    "docs/configuration.md: `{command} --{flag}` reads no variable; its --help says:\n{text}"
                ),
            }
            checked.insert((command.to_owned(), flag.clone()));
        }
    }
    assert!(checked.len() > 40, "the table was read: {checked:?}");
}

/// A free port on 127.0.0.1 (the OS picks it; it is released for the child to bind).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `script` with bash against the sandbox's kubeconfig; returns stdout, failing on errors.
async fn bash(script: &str, kubeconfig: &Path, dir: &Path) -> String {
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", dir.join("kube-cache"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_walkthrough_reaches_the_api_with_the_token_it_created() {
    let support::Sandboxed {
        sb,
        dir,
        kubeconfig,
    } = support::sandbox().await;

    // Step 1 of the walk-through: the namespaces and the API token Secret.
    let helm = section(README, "Install on a cluster with Helm");
    let blocks = sh_blocks(helm);
    let setup: Vec<String> = commands(blocks[0])
        .into_iter()
        .filter(|c| {
            c.starts_with("kubectl")
                && (c.contains("create namespace") || c.contains("channel-api-auth"))
        })
        .collect();
    assert_eq!(setup.len(), 3, "{setup:?}");
    bash(&setup.join("\n"), &kubeconfig, dir.path()).await;

    // What the chart does with that Secret: the API reads its tokens from it.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(sb.client(), "channel-operator");
    let secret = secrets.get("channel-api-auth").await.unwrap();
    let token = String::from_utf8(secret.data.unwrap()["tokens"].0.clone()).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let _api = tokio::process::Command::new(BIN)
        .args([
            "api",
            "--addr",
            &addr,
            "--channels-namespace",
            "channel-operator-channels",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("API_TOKENS", &token)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    support::http_ready(&format!("http://{addr}/readyz")).await;

    // "Reach the API": everything but the port-forward (the API listens on `addr` directly).
    let reach = section(README, "Install on a cluster with Helm")
        .split("Reach the API")
        .nth(1)
        .expect("a 'Reach the API' paragraph");
    let script: Vec<String> = commands(sh_blocks(reach)[0])
        .into_iter()
        .filter(|c| !c.contains("port-forward"))
        .map(|c| c.replace("127.0.0.1:8080", &addr))
        .collect();
    assert!(script.iter().any(|c| c.starts_with("TOKEN=")), "{script:?}");
    let answer = bash(&format!("{}\n", script.join("\n")), &kubeconfig, dir.path()).await;
    assert_eq!(answer, r#"{"data":[]}"#, "{script:?}");
    sb.shutdown().await;
}

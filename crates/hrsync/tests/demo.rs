//! `hrsync demo`, the README's first command, run as a user runs it: the real
//! binary, the real tansu broker, no configuration. The demo checks each
//! step against the apps itself and exits non-zero if one does not show;
//! this test also checks that what it prints tells the story. With
//! `--keep`, the console stays served after it.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What each step of the story must print: its title, then one line per
/// account (app, user, state, groups), whitespace squashed.
const STORY: &[(&str, &[&str])] = &[
    (
        "1. Lucy Moreau is hired into Customer Support",
        &[
            "slack lucy.moreau@acme.example active Customer Support, Everyone",
            "lattice (no accounts)",
        ],
    ),
    (
        "2. Lucy is promoted to Customer Support Manager",
        &[
            "slack lucy.moreau@acme.example active Customer Support, Everyone, People Managers",
            "lattice lucy.moreau@acme.example active People Managers",
        ],
    ),
    (
        "3. Omar Haddad signs his contract",
        &[
            "slack lucy.moreau@acme.example active Customer Support, Everyone, People Managers",
            "omar.haddad@acme.example inactive Customer Support, Everyone",
            "lattice lucy.moreau@acme.example active People Managers",
        ],
    ),
    (
        "4. Lucy goes on parental leave",
        &[
            "slack lucy.moreau@acme.example inactive Customer Support, Everyone, People Managers",
            "omar.haddad@acme.example inactive Customer Support, Everyone",
            "lattice lucy.moreau@acme.example inactive People Managers",
        ],
    ),
    (
        "5. Lucy returns from leave",
        &[
            "slack lucy.moreau@acme.example active Customer Support, Everyone, People Managers",
            "lattice lucy.moreau@acme.example active People Managers",
        ],
    ),
    (
        "6. Lucy is terminated, effective immediately",
        &[
            "slack lucy.moreau@acme.example inactive -",
            "omar.haddad@acme.example inactive Customer Support, Everyone",
            "lattice lucy.moreau@acme.example inactive -",
            "termination latency:",
        ],
    ),
    (
        "7. Lucy is rehired",
        &[
            "slack lucy.moreau@acme.example active Customer Support, Everyone",
            "omar.haddad@acme.example inactive Customer Support, Everyone",
            "lattice lucy.moreau@acme.example inactive -",
        ],
    ),
];

fn squash(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_demo_tells_the_whole_story() {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hrsync"))
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting hrsync demo");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for hrsync demo") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    let status =
        status.unwrap_or_else(|| panic!("hrsync demo still running after 3 minutes\n{context}"));
    assert!(status.success(), "hrsync demo failed: {status}\n{context}");
    // A first contact ends clean: no error line, not even from librdkafka
    // as the broker stops.
    assert!(
        !stderr.contains("ERROR") && !stdout.contains("ERROR"),
        "the demo logged errors\n{context}"
    );

    // Each step's section, from its title to the next blank line.
    let lines: Vec<String> = stdout.lines().map(squash).collect();
    for (title, expected) in STORY {
        let start = lines
            .iter()
            .position(|l| l.starts_with(title))
            .unwrap_or_else(|| panic!("no step {title:?}\n{context}"));
        let section: Vec<&String> = lines[start..]
            .iter()
            .take_while(|l| !l.is_empty())
            .collect();
        for want in *expected {
            assert!(
                section.iter().any(|l| l.contains(want)),
                "step {title:?} does not show {want:?}:\n{}\n\n{context}",
                section
                    .iter()
                    .map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    let latency = lines
        .iter()
        .find_map(|l| l.strip_prefix("termination latency: "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ms| ms.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no termination latency in ms\n{context}"));
    assert!(latency < 15_000, "{latency} ms\n{context}");
    assert!(
        lines.last().is_some_and(|l| l.starts_with("Story told in")),
        "{context}"
    );
    // The bar: under a minute once built (it typically takes a few
    // seconds; the margin is for a loaded machine running other tests).
    assert!(
        took < Duration::from_secs(60),
        "hrsync demo took {took:?}\n{context}"
    );
}

/// `hrsync demo --keep`: after the story, the console stays served and a
/// local sign-in made for the demo signs in `demo-admin`, who sees the
/// story's people and may act; SIGTERM then stops everything cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn the_kept_demo_serves_the_console_with_a_local_sign_in() -> anyhow::Result<()> {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hrsync"))
        .args(["demo", "--keep"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout");
    // The console's URL, once the story is told; the rest is read on.
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some((_, url)) = line.split_once("the admin console is at ") {
                let _ = url_tx.send(url.trim().to_owned());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let console =
        tokio::task::spawn_blocking(move || url_rx.recv_timeout(Duration::from_secs(180))).await?;
    let Ok(console) = console else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "no console URL printed:\n{}",
            reader.join().unwrap_or_default()
        );
    };
    let origin = console.trim_end_matches("/console/").to_owned();
    let cookie = hrsync_tests::console_sign_in(&origin, "demo-admin").await?;
    let http = reqwest::Client::new();
    let session: serde_json::Value = http
        .get(format!("{origin}/console/session"))
        .header("cookie", &cookie)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(session["subject"], "demo-admin", "{session}");
    assert_eq!(session["can_act"], true, "{session}");
    let people: serde_json::Value = http
        .get(format!("{origin}/console/api/v1/persons?q=lucy"))
        .header("cookie", &cookie)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        people["items"].as_array().map(Vec::len),
        Some(1),
        "{people}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = reader.join().unwrap_or_default();
    assert!(exited.success(), "{exited}\n{output}");
    assert!(
        output.contains("broker, roles and apps stopped"),
        "{output}"
    );
    Ok(())
}

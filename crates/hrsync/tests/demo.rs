//! `hrsync demo`, the README's first command, run as a user runs it: the real
//! binary, the real tansu broker, no configuration. The demo checks each
//! step against the apps itself and exits non-zero if one does not show;
//! this test also checks that what it prints tells the story.

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

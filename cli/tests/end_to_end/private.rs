//! A private swarm through the real binary: `swarm secret new`, a tracker, a seeder and a
//! fetcher that share the secret, and outsiders (no secret, a wrong one) refused by the
//! tracker and by the peers, with a message that says why.

use std::sync::Arc;

use crate::common::*;
use swarm_proto::access::{Access, SwarmKey};
use swarm_proto::protocol::{PeerRequest, PeerResponse};
use swarm_proto::transport::{self, Transport};
use swarm_proto::{ConnectError, FileId, Identity, PeerId};

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn only_nodes_with_the_secret_take_part() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("swarm.secret");
    let made = run(&["secret", "new", s(&secret)]);
    assert!(made.status.success(), "{}", stderr_of(&made));
    let again = run(&["secret", "new", s(&secret)]);
    assert!(!again.status.success(), "an existing secret is never replaced");

    let (_tracker, addr) = start_tracker_with(tmp.path(), &["--secret-file", s(&secret)]);
    let share = tmp.path().join("share");
    let data = content(300_000, 9);
    write(share.join("secret-plans.bin"), &data);
    let (_seeder, seeded, printed) = start_seeder(
        tmp.path(),
        "seeder",
        &share,
        &["--tracker", &addr, "--secret-file", s(&secret)],
        1,
    );
    let id = seeded[0].0.clone();

    // The printed command names the secret's file, so it runs as printed where a copy is.
    assert!(printed[0].contains("--secret-file"), "{}", printed[0]);
    let words: Vec<&str> = printed[0].split_whitespace().skip(1).collect();
    let as_printed = tmp.path().join("as-printed");
    let state = tmp.path().join("as-printed-state");
    let extra = ["-o", s(&as_printed), "--state", s(&state), "--listen", "127.0.0.1:0"];
    let fetched = run(&[&words[..], &extra[..]].concat());
    assert!(fetched.status.success(), "{}", stderr_of(&fetched));
    assert_eq!(std::fs::read(as_printed.join("secret-plans.bin")).unwrap(), data);

    // A member fetches as usual.
    let out = tmp.path().join("member");
    let fetched = run(&[
        "fetch",
        &id,
        "--tracker",
        &addr,
        "-o",
        s(&out),
        "--secret-file",
        s(&secret),
        "--state",
        s(&tmp.path().join("member-state")),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(fetched.status.success(), "{}", stderr_of(&fetched));
    assert_eq!(std::fs::read(out.join("secret-plans.bin")).unwrap(), data);

    // An outsider without the secret is told the swarm is private and what it would take.
    let outsider = run(&["ls", "--tracker", &addr, "--state", s(&tmp.path().join("outsider"))]);
    let said = stderr_of(&outsider);
    println!("an outsider without the secret sees: {}", said.trim());
    assert!(!outsider.status.success());
    assert!(said.contains("private") && said.contains("--secret-file"), "{said}");
    let fetch = run(&[
        "fetch",
        &id,
        "--tracker",
        &addr,
        "-o",
        s(&tmp.path().join("outsider-out")),
        "--state",
        s(&tmp.path().join("outsider2")),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!fetch.status.success());
    let said = stderr_of(&fetch);
    assert_eq!(said.matches("private").count(), 1, "the refusal, said once: {said}");
    assert!(!tmp.path().join("outsider-out/secret-plans.bin").exists());

    // A wrong secret is named as such.
    let wrong = tmp.path().join("wrong.secret");
    run(&["secret", "new", s(&wrong)]);
    let guess = run(&[
        "ls",
        "--tracker",
        &addr,
        "--secret-file",
        s(&wrong),
        "--state",
        s(&tmp.path().join("guesser")),
    ]);
    let said = stderr_of(&guess);
    println!("an outsider with a wrong secret sees: {}", said.trim());
    assert!(!guess.status.success());
    assert!(
        said.contains("wrong swarm secret") || said.contains("does not hold this swarm's secret"),
        "{said}"
    );

    // The seeder itself refuses outsiders too, and serves members.
    let holders = json(&run(&[
        "peers",
        &id,
        "--tracker",
        &addr,
        "--secret-file",
        s(&secret),
        "--json",
        "--state",
        s(&tmp.path().join("q")),
    ]));
    let seeder_row = holders
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["complete"] == true)
        .unwrap()
        .clone();
    let seeder_addr: std::net::SocketAddr = seeder_row["addr"].as_str().unwrap().parse().unwrap();
    let seeder_id: PeerId = seeder_row["peer"].as_str().unwrap().parse().unwrap();
    let file: FileId = id.parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ask = |access: Access| async move {
            let me = Transport::bind_with(
                Arc::new(Identity::generate().unwrap()),
                "127.0.0.1:0".parse().unwrap(),
                access,
            )
            .unwrap();
            let (connection, _) = me.connect(seeder_addr, Some(seeder_id)).await?;
            let request = PeerRequest::GetChunk { file, index: 0 };
            transport::exchange::<_, PeerResponse>(&connection, &request, 1024)
                .await
                .map(|(answer, _)| answer)
                .map_err(|e| ConnectError::Refused(e.to_string()))
        };
        let refused = ask(Access::Open).await.unwrap_err().to_string();
        assert!(refused.contains("private"), "{refused}");
        let key = Arc::new(SwarmKey::from_file(&wrong).unwrap());
        let refused = ask(Access::Private(key)).await.unwrap_err().to_string();
        assert!(refused.contains("secret"), "{refused}");
        let key = Arc::new(SwarmKey::from_file(&secret).unwrap());
        let answer = ask(Access::Private(key)).await.unwrap();
        assert!(matches!(answer, PeerResponse::Chunk { .. }), "{answer:?}");
    });

    // `swarm status` on the seeder's machine needs no secret: the node's own key proves more.
    let status = run(&["status", "--state", s(&tmp.path().join("seeder"))]);
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{}", stderr_of(&status));
    assert!(
        said.contains("node running") && said.contains("secret-plans.bin"),
        "{said}"
    );

    // A member of a private swarm meeting an open tracker is told so.
    let (_open, open_addr) = start_tracker(&tmp.path().join("open"));
    let mismatch = run(&[
        "ls",
        "--tracker",
        &open_addr,
        "--secret-file",
        s(&secret),
        "--state",
        s(&tmp.path().join("m")),
    ]);
    assert!(!mismatch.status.success());
    assert!(stderr_of(&mismatch).contains("open swarm"), "{}", stderr_of(&mismatch));
}

//! The README's separate-tracker flow across NATs: a tracker on a public segment, the seeder
//! behind one router and the fetcher behind another, each router of a kind — no NAT, a home
//! router's NAT (MASQUERADE: one mapping per socket, replies let in only from where it sent,
//! nothing new let in from outside), or a symmetric NAT (a new port for every destination).
//! `swarm tracker` on T, `swarm seed ./videos --tracker …` on A as T printed it, the command A
//! printed pasted on B. Every pair fetches; how the bytes went is counted on A's router.
//! Needs root (CI runs as root); says so and passes without it.
//!
//! `SWARM_NAT_MB` sizes the file (2 MB here; `just nat-matrix` runs a bigger one).

use std::time::Instant;

use super::lan::{bridge, lan_if_root, link, printed_from, Lan};
use crate::common::*;

/// What stands between a machine and the public segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Router {
    /// A plain router: the machine's address is public.
    Public,
    /// A home router's NAT (MASQUERADE, and a firewall that lets nothing new in).
    Nat,
    /// A NAT that maps every destination to a new port (MASQUERADE --random-fully).
    Symmetric,
}

impl Router {
    fn name(self) -> &'static str {
        match self {
            Router::Public => "public",
            Router::Nat => "NAT",
            Router::Symmetric => "symmetric NAT",
        }
    }

    /// The lines that make router `r` (public side `wan`, inside `lan` with `inside`) this kind.
    fn script(self, r: &str, wan: &str, inside: &str) -> Vec<String> {
        let on = format!("ip netns exec {{n}}-{r} iptables");
        let mut lines = vec![format!("ip netns exec {{n}}-{r} sysctl -q -w net.ipv4.ip_forward=1")];
        let masquerade = match self {
            Router::Public => {
                // The tracker's machine routes to the inside through this router.
                lines.push(format!("ip -n {{n}}-t route add {inside} via {}", wan_ip(r)));
                return lines;
            }
            Router::Nat => "MASQUERADE",
            Router::Symmetric => "MASQUERADE --random-fully",
        };
        lines.extend([
            format!("{on} -t nat -A POSTROUTING -o {{n}}-{wan} -j {masquerade}"),
            format!("{on} -A INPUT -i {{n}}-{wan} -m conntrack --ctstate NEW -j DROP"),
            format!("{on} -A FORWARD -i {{n}}-{wan} -m conntrack --ctstate NEW -j DROP"),
        ]);
        lines
    }
}

fn wan_ip(router: &str) -> &'static str {
    if router == "r" {
        "198.51.100.1"
    } else {
        "198.51.100.2"
    }
}

/// T (198.51.100.10) on a public bridge with router R (198.51.100.1, A 10.1.0.2 behind it) and
/// router S (198.51.100.2, B 10.2.0.2 behind it); A's router counts what A sends to B's
/// router (straight to B) and to T (the tracker, and its relay).
fn behind_routers(name: &str, a: Router, b: Router) -> Lan {
    let mut script = vec![
        link("r", "rw", "198.51.100.1/24", "t", "tr", ""),
        link("s", "sw", "198.51.100.2/24", "t", "ts", ""),
    ];
    script.extend(bridge("t", "br", "198.51.100.10/24", &["tr", "ts"]));
    script.extend([
        link("a", "ea", "10.1.0.2/24", "r", "ra", "10.1.0.1/24"),
        link("b", "eb", "10.2.0.2/24", "s", "sb", "10.2.0.1/24"),
        "ip -n {n}-a route add default via 10.1.0.1".to_owned(),
        "ip -n {n}-b route add default via 10.2.0.1".to_owned(),
    ]);
    script.extend(a.script("r", "rw", "10.1.0.0/24"));
    script.extend(b.script("s", "sw", "10.2.0.0/24"));
    if a == Router::Public {
        script.push("ip -n {n}-s route add 10.1.0.0/24 via 198.51.100.1".to_owned());
    }
    if b == Router::Public {
        script.push("ip -n {n}-r route add 10.2.0.0/24 via 198.51.100.2".to_owned());
    }
    for to in ["198.51.100.2", "198.51.100.10"] {
        script.push(format!("ip netns exec {{n}}-r iptables -A FORWARD -i {{n}}-ra -d {to}"));
    }
    Lan::build(name, &["a", "b", "r", "s", "t"], &script)
}

/// Bytes A's router forwarded from A to B's router, and to T.
fn counted(lan: &Lan) -> (u64, u64) {
    let out = lan
        .machine("r", &std::env::temp_dir(), "iptables -L FORWARD -v -x -n")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let bytes_to = |to: &str| -> u64 {
        listing
            .lines()
            .filter(|line| line.split_whitespace().any(|word| word == to))
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    (bytes_to("198.51.100.2"), bytes_to("198.51.100.10"))
}

/// How one pair went.
struct Crossed {
    seconds: f64,
    direct: u64,
    via_tracker: u64,
}

/// The flow on machines behind `a` and `b`, with a file of `size` bytes.
fn fetch_across(a: Router, b: Router, size: usize, prefix: &str) -> Option<Crossed> {
    let lan = lan_if_root(prefix, |n| behind_routers(n, a, b))?;
    let tmp = tempfile::tempdir().unwrap();
    let home = |name: &str| tmp.path().join(name);
    let film = content(size, 9);
    write(home("a").join("videos/film.mkv"), &film);

    let tracker = lan.start("t", &home("t"), "exec swarm tracker", &home("tracker.log"));
    let tracker_flag = printed_from(&tracker, "--tracker ");
    let seed = format!("exec swarm seed ./videos {tracker_flag}");
    let seeder = lan.start("a", &home("a"), &seed, &home("seed.log"));
    let printed = printed_from(&seeder, "swarm fetch ");

    let started = Instant::now();
    let what = format!("B ({}) fetched from A ({})", b.name(), a.name());
    lan.run_ok("b", &home("b"), &printed, &what);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(std::fs::read(home("b").join("videos/film.mkv")).unwrap(), film);
    let (direct, via_tracker) = counted(&lan);
    if std::env::var("NAT_DEBUG").is_ok() {
        for log in ["seed.log", "tracker.log"] {
            println!("--- {log}\n{}", std::fs::read_to_string(home(log)).unwrap_or_default());
        }
    }
    Some(Crossed {
        seconds,
        direct,
        via_tracker,
    })
}

fn file_size() -> usize {
    let megabytes: usize = std::env::var("SWARM_NAT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    megabytes * 1_000_000
}

/// Both behind home routers: the tracker introduces them, A punches a hole, and the bytes go
/// straight from A's router to B's.
#[test]
fn behind_two_home_routers_the_bytes_go_straight_through_a_punched_hole() {
    let size = file_size();
    let Some(crossed) = fetch_across(Router::Nat, Router::Nat, size, "swh") else {
        return;
    };
    println!(
        "direct {} B, via the tracker {} B, {:.2} s",
        crossed.direct, crossed.via_tracker, crossed.seconds
    );
    assert!(
        crossed.direct * 10 >= size as u64 * 8,
        "only {} of {size} bytes went straight to B",
        crossed.direct
    );
}

/// Both behind symmetric NATs: no hole can be punched, and the tracker relays.
#[test]
fn behind_two_symmetric_nats_the_tracker_relays() {
    let size = file_size();
    let Some(crossed) = fetch_across(Router::Symmetric, Router::Symmetric, size, "swy") else {
        return;
    };
    println!(
        "direct {} B, via the tracker {} B, {:.2} s",
        crossed.direct, crossed.via_tracker, crossed.seconds
    );
    assert!(
        crossed.via_tracker * 10 >= size as u64 * 8,
        "only {} of {size} bytes went through the relay",
        crossed.via_tracker
    );
}

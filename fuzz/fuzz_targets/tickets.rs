//! Tickets and share keys as people paste them: any text parses or is refused, and what
//! parses prints back to text that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_proto::share_key::ShareTicket;
use swarm_proto::ticket::Ticket;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    for prefix in ["", "swarm1", "swarm2", "swarmrw1", "swarmro1"] {
        let text = format!("{prefix}{text}");
        if let Ok(ticket) = text.parse::<Ticket>() {
            assert_eq!(ticket.to_string().parse::<Ticket>().as_ref(), Ok(&ticket));
        }
        if let Ok(ticket) = text.parse::<ShareTicket>() {
            assert_eq!(ticket.to_string().parse::<ShareTicket>().as_ref(), Ok(&ticket));
        }
    }
});

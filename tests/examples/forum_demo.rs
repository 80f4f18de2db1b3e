//! Runs the forum sketch against one `nc`-style connection under each policy and prints what
//! the application received.

use firmware_core::app::ForumSketch;
use firmware_core::Policy;
use fwsim_tests::{nc_once, FIELD_MESSAGE, FORUM_PORT};

fn main() {
    println!(
        "peer sends {} bytes and closes: {:02x?}",
        FIELD_MESSAGE.len(),
        FIELD_MESSAGE
    );
    for name in Policy::NAMES {
        let policy = Policy::from_name(name).expect("preset");
        let out = nc_once(policy, Box::new(ForumSketch::new(FORUM_PORT)), 5);
        let verdict = if out.read == FIELD_MESSAGE {
            "delivered"
        } else {
            "SILENTLY LOST"
        };
        println!(
            "{name:>7}: application read {:2} bytes {:02x?} -> {verdict}",
            out.read.len(),
            out.read
        );
    }
}

//! A fwsim device in your own turmoil simulation.
//!
//! Your services already have turmoil tests. Add a fwsim device (the firmware core on its
//! smoltcp stack) and its peer as two more hosts, run the simulation as usual, apply your
//! faults, and read fwsim's verdicts at the end.
//!
//! Run: `cargo run -p sim --example turmoil_beside`

use std::time::Duration;

use sim::backend::turmoil::{self as turmoil_backend, FwsimHosts};
use sim::scenario;
use sim::RunOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};

const SCENARIO: &str = r#"
name = "beside"
[device]
app = "forum"
policy = "fixed"
[link]
preset = "wlan-good"
[[peer]]
kind = "nc"
count = 5
interval_ms = 500
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = scenario::parse("beside.toml", SCENARIO, &[])?;

    // The scenario's tick, seed and epoch; turmoil's own latency off (the link model applies
    // it to fwsim's packets). Your settings go on top.
    let mut sim = turmoil_backend::sim_builder(&config)
        .simulation_duration(Duration::from_secs(120))
        .build();

    // Your own hosts: a turmoil TCP echo service and a client of it.
    sim.host("echo", || async {
        let listener = TcpListener::bind("0.0.0.0:7").await?;
        loop {
            let (mut stream, _) = listener.accept().await?;
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).await?;
            stream.write_all(&buf[..n]).await?;
        }
    });
    sim.client("my-client", async {
        let mut stream = TcpStream::connect("echo:7").await?;
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        Ok(())
    });

    // fwsim's device and its peer, beside them.
    let fwsim = FwsimHosts::add_to(&mut sim, &config, RunOptions::default(), "device", "laptop")?;

    // A fault of yours: the device's network goes away for a moment.
    let mut partitioned = false;
    loop {
        let t = sim.elapsed();
        if !partitioned && t >= Duration::from_millis(1200) {
            sim.partition("device", "laptop");
            partitioned = true;
        }
        if t >= Duration::from_millis(1600) {
            sim.repair("device", "laptop");
        }
        if sim.step()? {
            break;
        }
    }

    let report = fwsim.report()?;
    println!(
        "fwsim: {} connections, {} delivered, {} silently lost, {} visible to the peer; trace {}",
        report.summary.connections,
        report.summary.delivered,
        report.summary.violations(),
        report.summary.refused_visible,
        report.trace_hash
    );
    if report.summary.violations() > 0 {
        return Err("silent loss".into());
    }
    Ok(())
}

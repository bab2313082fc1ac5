//! The fault-injecting proxy as a program, for manual chaos: point a client (or `amqp perf`)
//! at it and type faults on standard input.
//!
//! ```text
//! cargo run -p tests --bin chaos-proxy -- 127.0.0.1:5673 127.0.0.1:5672
//! cut | reset | stall on|off | refuse on|off | throttle BYTES_PER_S | cut-after up|down BYTES | quit
//! ```

use tests::proxy::{Direction, Proxy};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: chaos-proxy LISTEN_ADDR UPSTREAM_ADDR   (then type commands; `help` lists them)");
        std::process::exit(2);
    };
    let proxy = Proxy::start_on(&listen, upstream.clone()).await;
    println!("forwarding {} -> {upstream}", proxy.addr());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match apply(&proxy, &words) {
            Ok(true) => break,
            Ok(false) => println!("ok ({} connections accepted so far)", proxy.accepted()),
            Err(usage) => println!("{usage}"),
        }
    }
}

/// Applies one command; `Ok(true)` to quit.
fn apply(proxy: &Proxy, words: &[&str]) -> Result<bool, &'static str> {
    const USAGE: &str =
        "commands: cut | reset | stall on|off | refuse on|off | throttle BYTES_PER_S | cut-after up|down BYTES | quit";
    let on = |w: Option<&&str>| match w {
        Some(&"on") => Ok(true),
        Some(&"off") => Ok(false),
        _ => Err(USAGE),
    };
    match words {
        ["cut"] => proxy.cut(),
        ["reset"] => proxy.reset(),
        ["stall", rest @ ..] => proxy.stall(on(rest.first())?),
        ["refuse", rest @ ..] => proxy.refuse(on(rest.first())?),
        ["throttle", rate] => proxy.throttle(rate.parse().map_err(|_| USAGE)?),
        ["cut-after", way, bytes] => {
            let direction = match *way {
                "up" => Direction::Upstream,
                "down" => Direction::Downstream,
                _ => return Err(USAGE),
            };
            proxy.cut_after(direction, bytes.parse().map_err(|_| USAGE)?);
        }
        ["quit"] | ["exit"] => return Ok(true),
        [] => {}
        _ => return Err(USAGE),
    }
    Ok(false)
}

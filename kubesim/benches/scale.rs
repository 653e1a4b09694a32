//! Scale figures for kubesim: 500 pods with two generating containers each (100,000 lines/s
//! in total by default) on a single-threaded runtime, N clients following logs over HTTP on
//! another thread. Prints lines generated per second, lines served to followers per second,
//! request latency for a pod list, and the process RSS.
//!
//! `cargo bench -p kubesim --bench scale`; knobs through the environment: `PODS` (500),
//! `RATE` (lines/s per container, 100), `FOLLOWERS` (50), `SECS` (5).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kubesim::{Container, LogSource, Pod, Rule, Scenario, Sim, SimOptions, User};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn follow(addr: std::net::SocketAddr, token: String, path: String, lines: Arc<AtomicU64>) {
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return;
    };
    tokio::spawn(conn);
    let Ok(req) = hyper::Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
    else {
        return;
    };
    let Ok(resp) = sender.send_request(req).await else {
        return;
    };
    let mut body = resp.into_body();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            let n = data.iter().filter(|b| **b == b'\n').count() as u64;
            lines.fetch_add(n, Ordering::Relaxed);
        }
    }
}

fn main() {
    let pods = env("PODS", 500);
    let rate = env("RATE", 100) as f64;
    let followers = env("FOLLOWERS", 50);
    let secs = env("SECS", 5);

    let log_max = 1024 * 1024;
    let mut scenario = Scenario::new("bench")
        .user(User::new("admin").rule(Rule::all()))
        .log_max_bytes(log_max);
    for i in 0..pods {
        let mut pod = Pod::new(&format!("web-{i}")).label("app", "web");
        for c in ["app", "proxy"] {
            let source = LogSource::new(rate).line_size(100).json_every(5);
            pod = pod.container(Container::new(c).generate(source));
        }
        scenario = scenario.pod(pod);
    }
    let options = SimOptions {
        tls: false,
        truth_lines: 1000,
        ..SimOptions::default()
    };

    // The simulator gets one thread (a current-thread runtime); clients get another.
    let (tx, rx) = std::sync::mpsc::channel();
    let sim_thread = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(sim) = Sim::start(scenario, options).await else {
                return;
            };
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let _ = tx.send((
                sim.addr(),
                sim.token("admin").unwrap_or_default(),
                sim.handle(),
                stop_tx,
            ));
            let _ = stop_rx.await;
            sim.shutdown().await;
        });
    });
    let Ok((addr, token, handle, stop)) = rx.recv() else {
        eprintln!("kubesim did not start");
        return;
    };

    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async move {
        let served = Arc::new(AtomicU64::new(0));
        for i in 0..followers {
            let path = format!(
                "/api/v1/namespaces/bench/pods/web-{}/log?container=app&follow=true\
                 &timestamps=true",
                i % pods.max(1)
            );
            tokio::spawn(follow(addr, token.clone(), path, served.clone()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let written0 = handle.lines_written();
        let served0 = served.load(Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let elapsed = started.elapsed().as_secs_f64();
        let written = (handle.lines_written() - written0) as f64 / elapsed;
        let served_rate = (served.load(Ordering::Relaxed) - served0) as f64 / elapsed;

        let list_started = Instant::now();
        follow_once(addr, &token).await;
        let list_ms = list_started.elapsed().as_secs_f64() * 1e3;

        println!("pods                 {pods} (2 containers each)");
        println!("target lines/s       {:.0}", rate * 2.0 * pods as f64);
        println!("generated lines/s    {written:.0}");
        println!("followers            {followers}");
        println!("served lines/s       {served_rate:.0} (to all followers)");
        println!("pod list of {pods}     {list_ms:.1} ms");
        println!("rss                  {} MiB", rss_kib() / 1024);
        println!(
            "log memory bound     {} MiB (containers x 2 files x logMaxBytes)",
            pods * 2 * 2 * log_max as u64 / (1024 * 1024)
        );
    });
    let _ = stop.send(());
    let _ = sim_thread.join();
}

async fn follow_once(addr: std::net::SocketAddr, token: &str) {
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return;
    };
    tokio::spawn(conn);
    let Ok(req) = hyper::Request::get("/api/v1/namespaces/bench/pods")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
    else {
        return;
    };
    if let Ok(resp) = sender.send_request(req).await {
        let _ = resp.into_body().collect().await;
    }
}

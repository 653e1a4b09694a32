//! `kubectl aether logs APP -f` while the cluster misbehaves, end to end: the built plugin
//! follows an app whose pods write lines at a steady rate while a seeded schedule of faults
//! hits it (log streams cut cleanly, reset and mid-line, watches cut, 429s with Retry-After
//! and 500s, restarts, a pod added and one deleted, rotations while disconnected). Afterwards
//! every container's printed lines are compared with what kubesim says it wrote: same lines,
//! same order, none twice, none missing, except across a `gap` event where the test rotated
//! a log while its stream was down.
//!
//! `AETHER_CHAOS_SEED=N` replays another schedule (the timing of the run still varies).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_tests::Cluster;
use chrono::{DateTime, Utc};
use kubesim::{Container, Cut, CutMode, LogSource, Pod, Rule, Scenario, SimHandle, User};
use podlogs::{EventKind, LogEvent};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

const NS: &str = "shop";
const CONTAINERS: [&str; 2] = ["app", "sidecar"];
/// Lines per second per container.
const RATE: f64 = 60.0;
/// How many faults one run applies.
const STEPS: usize = 24;
/// Longest wait for the plugin to show something.
const WAIT: Duration = Duration::from_secs(20);

/// A small deterministic generator (xorshift64*), so a schedule can be replayed by its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn seed(default: u64) -> u64 {
    std::env::var("AETHER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn web_pod(name: &str) -> Pod {
    Pod::new(name)
        .label("app", "web")
        .container(Container::new("app").generate(LogSource::new(RATE).json_every(7)))
        .container(Container::new("sidecar").generate(LogSource::new(RATE).style("web")))
}

fn scenario(pods: usize) -> Scenario {
    let mut scenario = Scenario::new(NS).user(User::new("admin").rule(Rule::all()));
    for i in 0..pods {
        scenario = scenario.pod(web_pod(&format!("web-{i}")));
    }
    scenario
}

/// The plugin, following, with its stdout collected by a task of its own so that the pipe
/// never fills while the test is busy.
struct Follower {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Follower {
    fn start(c: &Cluster, args: &[&str]) -> Follower {
        let mut child = aether_tests::aether_logs(&c.kubeconfig, &c.home, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the plugin starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("not poisoned").push(line);
            }
        });
        Follower { child, out, reader }
    }

    fn events(&self) -> Vec<LogEvent> {
        let out = self.out.lock().expect("not poisoned");
        out.iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is no event: {e}")))
            .collect()
    }

    /// Waits until `done` holds for the events printed so far; panics with `what` otherwise.
    async fn until(&self, what: &str, done: impl Fn(&[LogEvent]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if done(&self.events()) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let out = self.out.lock().expect("not poisoned");
                let last: Vec<&String> = out.iter().rev().take(30).collect();
                panic!(
                    "timed out waiting for {what}; last lines printed (newest first):\n{last:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) -> Vec<LogEvent> {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
        let _ = tokio::time::timeout(WAIT, &mut self.reader).await;
        self.events()
    }
}

/// Status events of one kind per (pod, container).
fn has_event(events: &[LogEvent], kind: EventKind, pod: &str, container: Option<&str>) -> bool {
    events.iter().any(|e| match e {
        LogEvent::Event(s) => {
            s.event == kind
                && s.pod == pod
                && (container.is_none() || s.container.as_deref() == container)
        }
        _ => false,
    })
}

/// What one container printed: its lines, and before which line index each gap came.
#[derive(Default)]
struct Printed {
    lines: Vec<(DateTime<Utc>, String)>,
    /// Before which printed line each gap came, with its message.
    gaps: Vec<(usize, String)>,
    /// Before which printed line each new instance (a `restarted` event) began.
    restarts: Vec<usize>,
}

fn printed(events: &[LogEvent]) -> BTreeMap<(String, String), Printed> {
    let mut by: BTreeMap<(String, String), Printed> = BTreeMap::new();
    for e in events {
        match e {
            LogEvent::Log(l) => by
                .entry((l.pod.clone(), l.container.clone()))
                .or_default()
                .lines
                .push((l.time, l.line.clone())),
            LogEvent::Event(s) if s.event == EventKind::Gap => {
                let key = (s.pod.clone(), s.container.clone().unwrap_or_default());
                let entry = by.entry(key).or_default();
                let at = entry.lines.len();
                entry.gaps.push((at, s.message.clone()));
            }
            LogEvent::Event(s) if s.event == EventKind::Restarted => {
                let key = (s.pod.clone(), s.container.clone().unwrap_or_default());
                let entry = by.entry(key).or_default();
                let at = entry.lines.len();
                entry.restarts.push(at);
            }
            _ => {}
        }
    }
    by
}

/// Compares one container's printed lines with kubesim's truth. `from_start`: the plugin read
/// the whole history, so the first truth line must come first; otherwise it started where it
/// joined. `rotated`: the test rotated this log while its stream was down (or before its first
/// read), so lines may be missing where a gap was reported or where a reader began.
/// `deleted`: the pod was deleted; kubesim deletes at once, so a stream that was down then
/// cannot be resumed and the end may be missing after a gap that says so. `restarted_twice`:
/// the kubelet keeps one previous instance, so an instance replaced twice before its tail got
/// back (a Retry-After can hold it a second) is out of reach, after a gap that says so.
fn compare(
    key: &(String, String),
    got: &Printed,
    truth: &[(DateTime<Utc>, String)],
    from_start: bool,
    rotated: bool,
    deleted: bool,
    restarted_twice: bool,
) -> Option<String> {
    let name = format!("{}/{}", key.0, key.1);
    let mut problems = Vec::new();
    let end = got.lines.len();
    let explained = |(at, message): &(usize, String)| {
        rotated
            || (deleted && *at == end && message.contains("pod was deleted"))
            || (restarted_twice && message.contains("restarted again"))
    };
    let unexplained: Vec<&(usize, String)> = got.gaps.iter().filter(|g| !explained(g)).collect();
    if !unexplained.is_empty() {
        problems.push(format!(
            "gap event(s) that no rotation or deletion explains (before printed line, \
             message): {unexplained:?}"
        ));
    }
    let gap_before = |i: usize| got.gaps.iter().any(|g| g.0 == i && explained(g));

    // Duplicates first: they are the clearest sign of a replay.
    let mut seen: HashMap<&(DateTime<Utc>, String), usize> = HashMap::new();
    for (i, line) in got.lines.iter().enumerate() {
        if let Some(first) = seen.insert(line, i) {
            problems.push(format!(
                "duplicate: printed line {i} repeats line {first}: {line:?}"
            ));
            break;
        }
    }

    // Walk the truth: every printed line must be the next truth line, except right after a
    // gap (when allowed), where truth lines may be skipped.
    let index: HashMap<&(DateTime<Utc>, String), usize> =
        truth.iter().enumerate().map(|(i, l)| (l, i)).collect();
    let mut expected = match (from_start, got.lines.first()) {
        (true, _) => 0,
        (false, Some(first)) => index.get(first).copied().unwrap_or(0),
        (false, None) => truth.len(),
    };
    for (i, line) in got.lines.iter().enumerate() {
        let Some(&at) = index.get(line) else {
            problems.push(format!("printed line {i} was never written: {line:?}"));
            break;
        };
        if at == expected {
            expected += 1;
            continue;
        }
        // A rotation before the first read leaves the first lines where no reader sees them,
        // as `kubectl logs` would not either.
        let after_gap = gap_before(i) || (rotated && (i == 0 || got.restarts.contains(&i)));
        if at > expected && after_gap {
            expected = at + 1;
            continue;
        }
        if at > expected {
            problems.push(format!(
                "missing: {} line(s) before printed line {i}, first missing {:?}, printed {line:?}",
                at - expected,
                truth[expected]
            ));
        } else {
            problems.push(format!(
                "out of order or repeated: printed line {i} {line:?} is truth line {at}, \
                 expected truth line {expected}"
            ));
        }
        break;
    }
    let end_explained = gap_before(end);
    if problems.is_empty() && expected < truth.len() && !end_explained {
        problems.push(format!(
            "missing at the end: {} line(s), first {:?}",
            truth.len() - expected,
            truth[expected]
        ));
    }
    if problems.is_empty() {
        return None;
    }
    Some(format!(
        "{name}: printed {} lines, kubesim wrote {}:\n  {}",
        got.lines.len(),
        truth.len(),
        problems.join("\n  ")
    ))
}

fn truth_of(h: &SimHandle, pod: &str, container: &str) -> Vec<(DateTime<Utc>, String)> {
    h.truth(NS, pod, container)
        .into_iter()
        .map(|t| (t.time, t.text))
        .collect()
}

/// What a run may do.
struct Plan {
    seed: u64,
    initial_pods: usize,
    /// Rotate logs while their streams are down (only then may gaps appear).
    rotations: bool,
    /// The plugin's arguments after `web`.
    args: &'static [&'static str],
    /// The plugin read all history, so every written line must be printed.
    from_start: bool,
}

/// Runs one chaos schedule and compares every container's output with the truth.
async fn chaos(plan: Plan) {
    let c = Cluster::start(scenario(plan.initial_pods), "admin").await;
    let h = c.sim.handle();
    let mut args = vec!["web"];
    args.extend_from_slice(plan.args);
    let follower = Follower::start(&c, &args);

    let mut live: Vec<String> = (0..plan.initial_pods).map(|i| format!("web-{i}")).collect();
    let mut all_pods = live.clone();
    for pod in &live {
        for container in CONTAINERS {
            follower
                .until(&format!("{pod}/{container} to start"), |ev| {
                    has_event(ev, EventKind::Started, pod, Some(container))
                })
                .await;
        }
    }

    let mut rng = Rng::new(plan.seed);
    let mut log = Vec::new();
    let mut rotated: BTreeSet<(String, String)> = BTreeSet::new();
    let mut restarts: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut added = false;
    let mut deleted = false;
    for step in 0..STEPS {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(300) as u64)).await;
        let pod = rng.pick(&live).clone();
        let container = rng.pick(&CONTAINERS).to_string();
        let mode = *rng.pick(&[CutMode::Clean, CutMode::Reset, CutMode::MidLine]);
        let roll = rng.below(100);
        let what = match roll {
            0..=34 => {
                let scope = rng.below(3);
                let cut = Cut {
                    mode,
                    pod: (scope > 0).then(|| pod.clone()),
                    container: (scope > 1).then(|| container.clone()),
                    ..Cut::default()
                };
                h.cut_log_streams(cut.clone());
                format!("cut log streams {cut:?}")
            }
            35..=44 => {
                h.cut_watch_streams(Cut {
                    mode,
                    ..Cut::default()
                });
                format!("cut watch streams {mode:?}")
            }
            45..=54 => {
                let n = 1 + rng.below(3) as u32;
                h.fail_next(n, 429, Some(1));
                format!("fail next {n} with 429, Retry-After 1")
            }
            55..=62 => {
                let n = 1 + rng.below(2) as u32;
                h.fail_next(n, 500, None);
                format!("fail next {n} with 500")
            }
            63..=79 => {
                h.restart_container(NS, &pod, &container, 137, "OOMKilled");
                *restarts
                    .entry((pod.clone(), container.clone()))
                    .or_default() += 1;
                format!("restart {pod}/{container}")
            }
            80..=87 if !added => {
                added = true;
                let name = format!("web-{}", plan.initial_pods);
                h.add_pod(web_pod(&name));
                live.push(name.clone());
                all_pods.push(name.clone());
                format!("add pod {name}")
            }
            80..=87 if !deleted && live.len() > 2 => {
                deleted = true;
                live.retain(|p| *p != pod);
                h.delete_pod(NS, &pod);
                format!("delete pod {pod}")
            }
            88..=99 if plan.rotations => {
                // The stream ends first, then the file rotates before the plugin is back:
                // the reopened stream cannot give back what the rotated file held.
                h.cut_log_streams(Cut {
                    mode,
                    pod: Some(pod.clone()),
                    container: Some(container.clone()),
                    ..Cut::default()
                });
                h.rotate_log(NS, &pod, &container);
                rotated.insert((pod.clone(), container.clone()));
                format!("cut {mode:?} and rotate {pod}/{container}")
            }
            _ => {
                h.cut_log_streams(Cut {
                    mode,
                    ..Cut::default()
                });
                format!("cut all log streams {mode:?}")
            }
        };
        log.push(format!("step {step}: {what}"));
    }

    // Faults over: stop every container, so the truth is final, and wait until the plugin
    // has said that each stream ended.
    h.fail_next(0, 500, None);
    for pod in &live {
        for container in CONTAINERS {
            h.terminate_container(NS, pod, container, 0, "Completed");
        }
    }
    let schedule = log.join("\n");
    for pod in &live {
        for container in CONTAINERS {
            follower
                .until(
                    &format!("{pod}/{container} to end, after:\n{schedule}\n"),
                    |ev| has_event(ev, EventKind::Ended, pod, Some(container)),
                )
                .await;
        }
    }
    for pod in all_pods.iter().filter(|p| !live.contains(p)) {
        follower
            .until(&format!("{pod} to be reported deleted"), |ev| {
                has_event(ev, EventKind::PodDeleted, pod, None)
            })
            .await;
    }
    let events = follower.stop().await;

    let got = printed(&events);
    let mut failures = Vec::new();
    for pod in &all_pods {
        for container in CONTAINERS {
            let key = (pod.clone(), container.to_string());
            let truth = truth_of(&h, pod, container);
            let empty = Printed::default();
            let mine = got.get(&key).unwrap_or(&empty);
            // A pod added later is read from its first line whatever --tail says.
            let from_start = plan.from_start || pod == &format!("web-{}", plan.initial_pods);
            let deleted = !live.contains(pod);
            let rotated = rotated.contains(&key);
            let twice = restarts.get(&key).is_some_and(|n| *n >= 2);
            if let Some(problem) = compare(&key, mine, &truth, from_start, rotated, deleted, twice)
            {
                failures.push(problem);
            }
        }
    }
    c.sim.shutdown().await;
    assert!(
        failures.is_empty(),
        "seed {}: the output differs from what the containers wrote\n{}\n\nschedule:\n{schedule}",
        plan.seed,
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_through_faults_loses_and_repeats_no_line() {
    chaos(Plan {
        seed: seed(7),
        initial_pods: 3,
        rotations: false,
        args: &["-f", "-o", "json", "--tail", "-1"],
        from_start: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_while_disconnected_is_the_only_gap() {
    chaos(Plan {
        seed: seed(11),
        initial_pods: 3,
        rotations: true,
        args: &["-f", "-o", "json", "--tail", "0"],
        from_start: false,
    })
    .await;
}

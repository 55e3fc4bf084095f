//! `reconnect-runner`: runs YAML reconnection scenarios against real local ChainFire / FlareDB
//! clusters with real faults, and reports the design note's whole test matrix as JUnit XML plus
//! an evidence folder per scenario.
//!
//! Modules: [`cli`] (arguments, exit codes), [`scenario`] (the file format), [`matrix`] (the
//! test matrix), [`executor`] (running scenarios in worker processes), [`report`] (verdicts,
//! JUnit, tables, summaries); and the engine that touches the real world: [`netns`],
//! [`supervisor`], [`faults`], [`driver`], [`history`], [`checks`]. [`verdict`] is the one
//! verdict type, from a check over the history to the JUnit testcase.

mod cli;
mod executor;
mod matrix;
mod recheck;
mod report;
mod scenario;

pub mod checks;
pub mod driver;
pub mod faults;
pub mod history;
pub mod links;
pub mod netns;
pub mod proxy;
pub mod supervisor;
pub mod verdict;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use cli::{Cli, Command, RunArgs, SelectArgs, exit};
use matrix::{CellStatus, Service};
use netns::NetworkMode;
use scenario::Suite;
use supervisor::BinaryPaths;

/// For commands that only print: a closed pipe (`reconnect-runner list | head -1`) ends the
/// process quietly, as for any Unix tool, instead of a panic in `println!`. Not for `run`,
/// which must always tear its nodes down.
fn quiet_on_closed_pipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: restores the default disposition before any thread exists; no handler runs.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    report::colour::init(cli.color);
    if matches!(
        cli.command,
        Command::List(_) | Command::Validate(_) | Command::Schema | Command::Check(_)
    ) {
        quiet_on_closed_pipe();
    }
    ExitCode::from(match cli.command {
        Command::Run(args) => run(&args),
        Command::List(args) => list(&args),
        Command::Validate(args) => validate(&args),
        Command::Check(args) => recheck::main(&args.dirs),
        Command::Schema => {
            print!("{}", scenario::schema_json());
            exit::PASSED
        }
        Command::Worker(args) => {
            // Broken variants for the suite's own tests: FAILPOINTS for the runner's clients.
            #[cfg(feature = "failpoints")]
            let _failpoints = fail::FailScenario::setup();
            executor::worker::main(args)
        }
        Command::Up(args) => up(&args),
        Command::UpWorker(args) => executor::up::worker(args),
    })
}

/// `up`: the scenario validated (against the matrix beside it) and its binaries found first.
fn up(args: &cli::UpArgs) -> u8 {
    let suite = match load(&SelectArgs {
        paths: vec![args.scenario.clone()],
        matrix: None,
        filter: None,
    }) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let Some(file) = suite.selected_scenarios().next() else {
        eprintln!("error: {} names no scenario", args.scenario.display());
        return exit::BAD_INPUT;
    };
    let binaries = match locate_binaries(&args.binaries, &[file]) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    executor::up::up(args, file, &binaries)
}

fn load(args: &SelectArgs) -> Result<Suite, u8> {
    Suite::load(args).map_err(|problems| {
        eprintln!("{problems}");
        exit::BAD_INPUT
    })
}

fn validate(args: &SelectArgs) -> u8 {
    match load(args) {
        Ok(suite) => {
            let steps: usize = suite.scenarios.iter().map(|f| f.scenario.steps.len()).sum();
            println!(
                "ok: {} scenario(s), {} step(s), matrix {} with {} cell(s)",
                suite.scenarios.len(),
                steps,
                suite.matrix_path.display(),
                suite.matrix.cells.len()
            );
            exit::PASSED
        }
        Err(code) => code,
    }
}

fn list(args: &SelectArgs) -> u8 {
    let suite = match load(args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    println!("Scenarios:");
    for f in &suite.scenarios {
        let selected = if suite.selected.contains(&f.scenario.id) {
            ""
        } else {
            " (not selected)"
        };
        println!("  {}{selected}  [{}]", f.scenario.id, f.path.display());
        println!("      {}", f.scenario.title);
        if let Some(d) = &f.scenario.description {
            println!("      {}", d.trim());
        }
        for c in &f.scenario.covers {
            println!("      covers {} ({})", c.cell, c.status);
        }
    }
    println!("\nMatrix ({}):", suite.matrix_path.display());
    for c in suite.matrix.cells_in_order() {
        let by = match suite.covering(&c.cell) {
            Some(f) => format!("scenario {}", f.scenario.id),
            None => match (&c.pending, c.status) {
                (Some(p), _) => format!("PENDING: {p}"),
                (None, CellStatus::Test) => "NO SCENARIO (reported as missing)".into(),
                (None, _) => "documented, no scenario".into(),
            },
        };
        println!(
            "  {:<52} {:<8} {}",
            format!(
                "{} {} {}",
                c.cell.row_id(),
                suite.matrix.row_title(c.cell.row).unwrap_or_default(),
                c.cell.service_label()
            ),
            c.status.to_string(),
            by
        );
    }
    exit::PASSED
}

/// Exit 2 for a run refused before anything started: says why on stderr and in a JUnit report
/// with one error testcase (its path was checked first), so CI shows the reason.
fn refuse(args: &RunArgs, reason: &str) -> u8 {
    eprintln!("{reason}");
    if let Err(e) = report::junit::write(&report::junit::not_run_report(reason), &args.junit) {
        eprintln!("error: {e}");
    }
    exit::BAD_INPUT
}

/// Every server binary the scenarios start, found before anything runs.
fn locate_binaries(
    given: &cli::BinaryArgs,
    scenarios: &[&scenario::ScenarioFile],
) -> Result<BinaryPaths, String> {
    let search = BinaryPaths {
        bin_dir: given.bin_dir.clone(),
        chainfire: given.chainfire_bin.clone(),
        flaredb: given.flaredb_bin.clone(),
    };
    let mut binaries = BinaryPaths::default();
    for (service, slot) in [
        (Service::ChainFire, &mut binaries.chainfire),
        (Service::FlareDb, &mut binaries.flaredb),
    ] {
        if !scenarios
            .iter()
            .any(|f| f.scenario.cluster(service).is_some())
        {
            continue;
        }
        let Some(engine) = executor::engine_service(service) else {
            continue;
        };
        *slot = Some(search.locate(engine).map_err(|e| e.to_string())?);
    }
    Ok(binaries)
}

fn run(args: &RunArgs) -> u8 {
    let started = Instant::now();
    // Where the results go is checked before anything else, so nothing runs for nothing.
    if let Err(e) = report::junit::check_writable(&args.junit) {
        eprintln!("error: {e}");
        return exit::BAD_INPUT;
    }
    let suite = match Suite::load(&args.select) {
        Ok(s) => s,
        Err(problems) => return refuse(args, &problems.to_string()),
    };
    let selected: Vec<_> = suite.selected_scenarios().collect();

    // Binaries: every service a selected scenario starts must be found before anything runs.
    let binaries = match locate_binaries(&args.binaries, &selected) {
        Ok(b) => b,
        Err(e) => return refuse(args, &format!("error: {e}")),
    };
    // Which binaries run is said, and recorded (JUnit properties, `binaries.txt` in the
    // evidence), so a result always names what it tested.
    let described: Vec<(String, String)> = [
        ("chainfire", &binaries.chainfire),
        ("flaredb", &binaries.flaredb),
    ]
    .into_iter()
    .filter_map(|(service, path)| {
        path.as_deref()
            .map(|p| (service.to_owned(), supervisor::describe_binary(p)))
    })
    .collect();
    for (service, binary) in &described {
        eprintln!("reconnect-runner: {service} = {binary}");
    }

    // Network: private namespaces unless told otherwise; never a silent fallback to the host.
    // Without namespaces every cell is reported as skipped with the reason (never passed).
    let mut cannot_run = None;
    let network = if args.host_network {
        // A runner killed with SIGKILL leaves its workers' chains (and their DROP rules) in
        // the host's INPUT/OUTPUT: remove those of workers that are gone, and say so.
        match faults::remove_orphaned_host_chains() {
            Ok(removed) => {
                for chain in removed {
                    eprintln!(
                        "reconnect-runner: removed the leftover iptables chain {chain} of a run \
                         that is gone"
                    );
                }
            }
            Err(e) => eprintln!("warning: cannot look for leftover iptables chains: {e}"),
        }
        NetworkMode::HostNetwork
    } else {
        let probe = netns::probe();
        if let Err(why) = &probe.namespaces {
            eprintln!(
                "warning: cannot make private network namespaces here: {why}\n\
                 every scenario is reported as SKIPPED. Run as root or allow unprivileged user \
                 namespaces, or pass --host-network to run on the host's network (fixed ports \
                 replaced by free ones, iptables rules in a dedicated chain)."
            );
            cannot_run = Some(format!(
                "no private network namespace can be made here: {why}"
            ));
        }
        if let Err(why) = &probe.iptables {
            eprintln!(
                "warning: iptables does not work inside the namespace: {why}; steps that block or \
                 partition will be reported as skipped, never as passed"
            );
        }
        NetworkMode::PrivateNamespace
    };

    // Held until the run ends: no other run may use this evidence folder meanwhile.
    let _evidence_lock = match executor::evidence::prepare(&args.evidence, &selected) {
        Ok(lock) => lock,
        Err(e) => return refuse(args, &format!("error: {e}")),
    };
    let listing: String = described
        .iter()
        .map(|(service, binary)| format!("{service} = {binary}\n"))
        .collect();
    if let Err(e) = std::fs::write(args.evidence.join("binaries.txt"), listing) {
        return refuse(
            args,
            &format!(
                "error: cannot write {}: {e}",
                args.evidence.join("binaries.txt").display()
            ),
        );
    }
    let seed = args.seed.unwrap_or_else(random_seed);
    eprintln!(
        "reconnect-runner: {} scenario(s) of the matrix {} x {} run(s), {} at a time, seed {seed}, {}; evidence in {}",
        selected.len(),
        suite.matrix_path.display(),
        args.repeat,
        args.jobs,
        match network {
            NetworkMode::PrivateNamespace => "private network namespaces",
            NetworkMode::HostNetwork => "host network",
        },
        args.evidence.display()
    );
    let plan = executor::pool::Plan {
        scenarios: selected,
        evidence_root: args.evidence.clone(),
        repeat: args.repeat,
        jobs: args.jobs,
        seed,
        only_run: args.only_run,
        network,
        binaries,
        keep_going: args.keep_going,
        cannot_run,
    };
    let outcome = executor::pool::run_all(&plan);

    let mut cells = report::build(&suite, &outcome.runs, outcome.interrupted);
    if args.flaky_is_pass {
        report::flaky_is_pass(&mut cells);
    }
    println!(
        "\n{}",
        report::table::render(&cells, report::table::output_width())
    );
    print!("{}", report::table::failures(&cells));
    let totals = report::table::totals_line(&cells);
    println!("{totals}");
    let facts = report::junit::RunFacts {
        seed,
        repeat: args.repeat,
        network: match network {
            NetworkMode::PrivateNamespace => "private network namespace per scenario".into(),
            NetworkMode::HostNetwork => "host network".into(),
        },
        evidence_root: args.evidence.display().to_string(),
        duration: started.elapsed(),
        binaries: described,
    };
    let junit = report::junit::build_report(&cells, &facts);
    if let Err(e) = report::junit::write(&junit, &args.junit) {
        eprintln!("error: {e}");
        return exit::BAD_INPUT;
    }
    let index = match report::index::write(&cells, &args.evidence, &args.junit, &totals) {
        Ok(written) => written[0].display().to_string(),
        Err(e) => {
            eprintln!("warning: {e}");
            "-".into()
        }
    };
    println!(
        "JUnit: {}   evidence: {}   index: {index}   ({:.0} s, seed {seed})",
        args.junit.display(),
        args.evidence.display(),
        started.elapsed().as_secs_f64()
    );
    let code = report::exit_code(&cells, outcome.interrupted, args.allow_skips);
    if code == exit::INCOMPLETE {
        println!(
            "incomplete: a TEST cell was skipped or none ran (exit {code}); pass --allow-skips to accept a run that could not test everything"
        );
    }
    code
}

/// A seed when none is given: time and a per-process random hash, printed for replay.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as u64;
    RandomState::new().hash_one(nanos) % 1_000_000_000
}

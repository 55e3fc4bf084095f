//! `reconnect-runner`: runs YAML reconnection scenarios against real local ChainFire / FlareDB
//! clusters with real faults, and reports the design note's whole test matrix as JUnit XML plus
//! an evidence folder per scenario.
//!
//! Modules: [`cli`] (arguments, exit codes), [`scenario`] (the file format), [`matrix`] (the
//! test matrix), [`executor`] (running scenarios in worker processes), [`report`] (verdicts,
//! JUnit, tables, summaries); and the engine that touches the real world: [`netns`],
//! [`supervisor`], [`faults`], [`driver`], [`history`], [`checks`].

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

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use cli::{Cli, Command, RunArgs, SelectArgs, exit};
use matrix::{CellStatus, Service};
use netns::NetworkMode;
use scenario::Suite;
use supervisor::BinaryPaths;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    })
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

fn run(args: &RunArgs) -> u8 {
    let started = Instant::now();
    let suite = match load(&args.select) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let selected: Vec<_> = suite.selected_scenarios().collect();

    // Binaries: every service a selected scenario starts must be found before anything runs.
    let search = BinaryPaths {
        bin_dir: args.binaries.bin_dir.clone(),
        chainfire: args.binaries.chainfire_bin.clone(),
        flaredb: args.binaries.flaredb_bin.clone(),
    };
    let mut binaries = BinaryPaths::default();
    for (service, slot) in [
        (Service::ChainFire, &mut binaries.chainfire),
        (Service::FlareDb, &mut binaries.flaredb),
    ] {
        if !selected
            .iter()
            .any(|f| f.scenario.cluster(service).is_some())
        {
            continue;
        }
        let Some(engine) = executor::engine_service(service) else {
            continue;
        };
        match search.locate(engine) {
            Ok(path) => *slot = Some(path),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::BAD_INPUT;
            }
        }
    }

    // Network: private namespaces unless told otherwise; never a silent fallback to the host.
    // Without namespaces every cell is reported as skipped with the reason (never passed).
    let mut cannot_run = None;
    let network = if args.host_network {
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

    if let Err(e) = executor::pool::prepare_evidence(&args.evidence, &selected) {
        eprintln!("error: {e}");
        return exit::BAD_INPUT;
    }
    let seed = args.seed.unwrap_or_else(random_seed);
    eprintln!(
        "reconnect-runner: {} scenario(s) x {} run(s), {} at a time, seed {seed}, {}; evidence in {}",
        selected.len(),
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
        network,
        binaries,
        keep_going: args.keep_going,
        cannot_run,
    };
    let outcome = executor::pool::run_all(&plan);

    let cells = report::build(&suite, &outcome.runs, outcome.interrupted);
    println!("\n{}", report::table::render(&cells));
    println!("{}", report::table::totals_line(&cells));
    let facts = report::junit::RunFacts {
        seed,
        repeat: args.repeat,
        network: match network {
            NetworkMode::PrivateNamespace => "private network namespace per scenario".into(),
            NetworkMode::HostNetwork => "host network".into(),
        },
        evidence_root: args.evidence.display().to_string(),
        duration: started.elapsed(),
    };
    let junit = report::junit::build_report(&cells, &facts);
    if let Err(e) = report::junit::write(&junit, &args.junit) {
        eprintln!("error: {e}");
        return exit::BAD_INPUT;
    }
    println!(
        "JUnit: {}   evidence: {}   ({:.0} s, seed {seed})",
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

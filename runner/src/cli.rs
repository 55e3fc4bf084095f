//! Command line: subcommands, options and the exit codes CI relies on.
//!
//! Only parsing and the documentation shown by `--help` live here; `main` turns a parsed
//! [`Cli`] into work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit codes. CI tells "the platform failed a test" (1) from "the suite could not run" (2).
pub mod exit {
    /// Every selected TEST cell passed (SKIP, DOC-GAP and pending cells do not fail a run).
    pub const PASSED: u8 = 0;
    /// At least one TEST cell failed, errored, was flaky under `--repeat`, or has no scenario.
    pub const TESTS_FAILED: u8 = 1;
    /// Bad input: bad YAML, unknown step or field, bad reference, missing binary, bad flags.
    pub const BAD_INPUT: u8 = 2;
    /// Incomplete: nothing failed, but a selected TEST cell was skipped because this machine
    /// cannot make its faults (no network namespaces, no iptables), or no TEST cell ran at all.
    /// `--allow-skips` turns this into 0.
    pub const INCOMPLETE: u8 = 3;
    /// Interrupted (Ctrl-C / SIGTERM): everything started was torn down, reports are partial.
    pub const INTERRUPTED: u8 = 130;
}

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    every selected TEST cell passed (SKIP, DOC-GAP and pending cells are reported, not failed)
  1    a TEST cell failed or errored, passed only in some of the --repeat runs (flaky), or is a
       TEST cell of the matrix that no scenario covers
  2    could not run: bad YAML, unknown field or step kind, bad reference, missing binary,
       bad command line
  3    incomplete: nothing failed, but a selected TEST cell was skipped because this machine
       cannot make its faults (no network namespaces, no iptables), or no TEST cell ran at all;
       --allow-skips accepts that (exit 0). A skip is only ever an environment limit: a
       pre-check that fails because of the product (e.g. nodes not binding their own IP) fails
  130  interrupted by Ctrl-C or SIGTERM (nodes torn down, partial reports written)";

/// Runs the platform's reconnection scenarios (the design note's S1-S5) against real local
/// ChainFire / FlareDB clusters with real faults (SIGKILL, SIGTERM, SIGSTOP, iptables), and
/// reports every cell of the test matrix as JUnit XML plus an evidence folder.
#[derive(Debug, Parser)]
#[command(name = "reconnect-runner", version, after_long_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Colour the progress lines and failures: `auto` only on a terminal and never when
    /// NO_COLOR is set; CI logs, worker.log and summaries are always plain.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: clap::ColorChoice,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run scenarios and report the whole test matrix.
    ///
    /// Each scenario starts its clusters inside a private network namespace (so the design
    /// note's fixed ports and iptables rules never touch the host), runs its steps in order with
    /// a time bound on each, tears everything down, and gives every matrix cell it covers a
    /// verdict. Cells of the matrix that no selected scenario covers are still reported.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Run(RunArgs),
    /// List the scenarios and the matrix cells they cover, then the whole matrix.
    List(SelectArgs),
    /// Check scenario files and the matrix without starting anything: syntax, unknown fields and
    /// step kinds (with file, line and column), and references (clusters, node ids, names).
    #[command(after_long_help = EXIT_CODES_HELP)]
    Validate(SelectArgs),
    /// Print the JSON Schema of scenario files (committed as scenarios/scenario.schema.json).
    Schema,
    /// Re-run the checks on saved evidence: each run folder's history.jsonl, judged by the
    /// checks of its scenario copy (check_linearizable, check_no_lost_writes, node exits, and
    /// the window checks check_reconnect, check_backoff of an operation or a watch,
    /// check_peer_backoff, check_clear_error, check_watch gap_free, check_pd_registration, whose
    /// windows come from the step notes in the history, and check_converged on the status
    /// samples it recorded). Folders are searched two levels down (evidence root, scenario, run).
    ///
    /// Exit 0: every re-run check passed; 1: one failed; 2: no evidence, or unreadable.
    Check(CheckArgs),
    /// Start a scenario's clusters in their sandbox and keep them running until Ctrl-C,
    /// printing every node's endpoints and logs and how to reach them (`chainfire-ctl`,
    /// `flaredb-ctl`). No step runs: this is for poking a cluster by hand.
    Up(UpArgs),
    /// Internal: one scenario run, started by `run` inside its own network namespace.
    #[command(name = "__worker", hide = true)]
    Worker(WorkerArgs),
    /// Internal: the clusters of `up`, inside their namespace.
    #[command(name = "__up", hide = true)]
    UpWorker(UpWorkerArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The scenario whose `clusters:` to start.
    #[arg(value_name = "SCENARIO")]
    pub scenario: PathBuf,
    /// Where the nodes' logs and data go (the folder `up-<scenario-id>` below it).
    #[arg(long, value_name = "DIR", default_value = "reconnect-results")]
    pub evidence: PathBuf,
    #[command(flatten)]
    pub binaries: BinaryArgs,
    /// On the host's network instead of a private namespace (reachable without nsenter).
    #[arg(long)]
    pub host_network: bool,
}

#[derive(Debug, Args)]
pub struct UpWorkerArgs {
    #[arg(long)]
    pub scenario: PathBuf,
    #[arg(long)]
    pub evidence_dir: PathBuf,
    #[arg(long)]
    pub host_network: bool,
    #[arg(long)]
    pub chainfire_bin: Option<PathBuf>,
    #[arg(long)]
    pub flaredb_bin: Option<PathBuf>,
}

/// What the parent tells a worker (it has validated the scenario and found the binaries).
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub scenario: PathBuf,
    #[arg(long)]
    pub evidence_dir: PathBuf,
    #[arg(long)]
    pub run: u32,
    #[arg(long)]
    pub runs: u32,
    #[arg(long)]
    pub seed: u64,
    /// The run's base seed (`--seed` of `run`), which replays it with `--run`.
    #[arg(long)]
    pub base_seed: u64,
    #[arg(long)]
    pub host_network: bool,
    #[arg(long)]
    pub keep_going: bool,
    #[arg(long)]
    pub chainfire_bin: Option<PathBuf>,
    #[arg(long)]
    pub flaredb_bin: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Evidence folders (a run's, a scenario's, or the whole evidence root).
    #[arg(value_name = "EVIDENCE_DIR", default_value = "reconnect-results")]
    pub dirs: Vec<PathBuf>,
}

/// Which scenario files and which matrix.
#[derive(Debug, Clone, Args)]
pub struct SelectArgs {
    /// Scenario files or folders (folders are searched for *.yaml / *.yml, not recursively;
    /// `matrix.yaml` is the matrix, not a scenario).
    #[arg(value_name = "PATHS", default_value = "scenarios")]
    pub paths: Vec<PathBuf>,
    /// The test matrix file. Default: `matrix.yaml` beside the first path given (in it, for a
    /// folder; in its folder, for a file), else `scenarios/matrix.yaml` of the current
    /// directory; `run` prints the one it used. Scenarios named on the command line stand in
    /// for the matrix's own scenarios of the same id or cell (a draft anywhere); the other
    /// scenarios beside the matrix are known, and reported as not selected.
    #[arg(long, value_name = "FILE")]
    pub matrix: Option<PathBuf>,
    /// Only scenarios whose id, or one of whose cells (e.g. `S3/chainfire`), contains this text.
    /// Cells of other scenarios are reported as "not selected".
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Where to write the JUnit XML report.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "reconnect-results/junit.xml"
    )]
    pub junit: PathBuf,
    /// Evidence root: one folder per scenario (and per repeat) with node logs, the client log,
    /// history.jsonl and summary.md.
    #[arg(long, value_name = "DIR", default_value = "reconnect-results")]
    pub evidence: PathBuf,
    #[command(flatten)]
    pub binaries: BinaryArgs,
    /// Run every scenario N times. A cell that passes in some runs and fails in others is
    /// reported as flaky, which counts as a failure (exit code 1; in JUnit a failure with a
    /// `rerunFailure` per failed run) unless --flaky-is-pass is given.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Count a flaky cell (passed at least once under --repeat) as passed: exit 0, and in JUnit
    /// a passed testcase with a `flakyFailure` per failed run, as Surefire and nextest write
    /// it. Off by default: a platform that loses a write one time in three is broken.
    #[arg(long)]
    pub flaky_is_pass: bool,
    /// Scenarios run in parallel (each in its own network namespace).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
    /// Keep running the remaining steps of a scenario after a TEST step failed (the failure is
    /// still reported). By default a scenario stops at its first failed step.
    #[arg(long)]
    pub keep_going: bool,
    /// Seed for the random choices (`any` / `follower` targets); printed in the report and the
    /// JUnit properties so a run picks the same nodes again. Default: random.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Replay one repetition alone: with the --seed a run printed, run K of it, with the same
    /// node choices as then (its evidence goes to <scenario>/run-K when K > 1).
    #[arg(long = "run", value_name = "K", requires = "seed", value_parser = clap::value_parser!(u32).range(1..))]
    pub only_run: Option<u32>,
    /// Exit 0 even when a selected TEST cell was skipped because this machine cannot make its
    /// faults (no namespaces, no iptables). Without it such a run exits 3 ("incomplete"): a
    /// run that tested nothing is never green.
    #[arg(long)]
    pub allow_skips: bool,
    /// Run on the host's network instead of private namespaces (only where namespaces are
    /// unavailable). iptables rules then go into a dedicated chain that is always removed.
    #[arg(long)]
    pub host_network: bool,
}

/// Where the service binaries are. Default: next to the runner, then `PATH`.
#[derive(Debug, Clone, Args)]
pub struct BinaryArgs {
    /// Folder holding `chainfire` and `flaredb` (e.g. target/debug).
    #[arg(long, value_name = "DIR", env = "RECONNECT_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Path of the `chainfire` binary (overrides --bin-dir).
    #[arg(long, value_name = "FILE", env = "RECONNECT_CHAINFIRE_BIN")]
    pub chainfire_bin: Option<PathBuf>,
    /// Path of the `flaredb` binary (overrides --bin-dir).
    #[arg(long, value_name = "FILE", env = "RECONNECT_FLAREDB_BIN")]
    pub flaredb_bin: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_match_the_documented_layout() {
        let cli = Cli::try_parse_from(["reconnect-runner", "run"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(run.select.paths, vec![PathBuf::from("scenarios")]);
        assert_eq!(run.junit, PathBuf::from("reconnect-results/junit.xml"));
        assert_eq!(run.evidence, PathBuf::from("reconnect-results"));
        assert_eq!((run.repeat, run.jobs), (1, 1));
        assert!(!run.keep_going && !run.host_network && !run.allow_skips);
    }

    #[test]
    fn the_worker_subcommand_is_hidden() {
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("__worker"), "{help}");
        assert!(
            help.contains("validate") && help.contains("schema"),
            "{help}"
        );
    }

    #[test]
    fn repeat_zero_is_rejected() {
        assert!(Cli::try_parse_from(["reconnect-runner", "run", "--repeat", "0"]).is_err());
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command()
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        for needle in [
            "Exit codes",
            "flaky",
            "bad YAML",
            "missing binary",
            "incomplete",
            "--allow-skips",
        ] {
            assert!(
                help.contains(needle),
                "run --help lacks {needle:?}:\n{help}"
            );
        }
    }
}

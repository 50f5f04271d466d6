//! `dmc`: the DataMesh language tool. Parses arguments and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The DataMesh projection language tool.
#[derive(Debug, Parser)]
#[command(
    name = "dmc",
    version,
    about = "Check, run, test and explain DataMesh `.dmp` programs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check programs for errors; exit 1 if any has one (warnings are allowed).
    Check {
        /// `.dmp` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Fold events through a program and print every projection's documents as JSON.
    Run {
        /// The `.dmp` program.
        file: PathBuf,
        /// Events, one JSON object per line: {"type": ..., "data": {...}, "stream", "id", "time", "from"}.
        #[arg(long)]
        events: PathBuf,
        /// Skip events of types the program does not declare instead of failing.
        #[arg(long)]
        allow_unknown: bool,
    },
    /// Run the `test` blocks of programs.
    Test {
        /// `.dmp` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a stage of the compiler for a program.
    #[command(group = clap::ArgGroup::new("stage").required(true))]
    Explain {
        /// The `.dmp` program.
        file: PathBuf,
        /// The syntax tree.
        #[arg(long, group = "stage")]
        ast: bool,
        /// The typed IR.
        #[arg(long, group = "stage")]
        ir: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let style = dmc::Style::for_stderr();
    let code = match cli.command {
        Command::Check { files } => dmc::check(&files, style, &mut err),
        Command::Run {
            file,
            events,
            allow_unknown,
        } => {
            let options = dmc::RunOptions { allow_unknown };
            dmc::run(&file, &events, options, style, &mut out, &mut err)
        }
        Command::Test { files } => dmc::test(&files, style, &mut out, &mut err),
        Command::Explain { file, ast, ir } => {
            let stage = if ast { dmc::Stage::Ast } else { dmc::Stage::Ir };
            let _ = ir;
            dmc::explain(&file, stage, style, &mut out, &mut err)
        }
    };
    ExitCode::from(code)
}

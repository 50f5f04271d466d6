//! `dmc`: the DataMesh language tool. Parses arguments and hands over to the library.

#![forbid(unsafe_code)]

use std::io::Write;
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
        /// The fold engine: `jit` (Cranelift, the default) or `interp` (the reference
        /// interpreter).
        #[arg(long, value_enum, default_value = "jit")]
        engine: EngineArg,
    },
    /// Run the `test` blocks of programs.
    Test {
        /// `.dmp` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The engine that folds the given events: `interp` (the reference
        /// interpreter, the default) or `jit` (Cranelift, what a node runs).
        #[arg(long, value_enum, default_value = "interp")]
        engine: EngineArg,
    },
    /// Explain a diagnostic code (`dmc explain E0102`: what it means, an example, the
    /// fix, as in the book), or print a stage of the compiler for a program
    /// (`dmc explain FILE --ast|--ir|--clif`); `--list` lists the codes.
    #[command(group = clap::ArgGroup::new("stage"))]
    Explain {
        /// A diagnostic code, or a `.dmp` program with a stage flag.
        #[arg(required_unless_present = "list")]
        file: Option<PathBuf>,
        /// List every diagnostic code with its title.
        #[arg(long, conflicts_with_all = ["file", "stage"])]
        list: bool,
        /// The syntax tree.
        #[arg(long, group = "stage")]
        ast: bool,
        /// The typed IR.
        #[arg(long, group = "stage")]
        ir: bool,
        /// The Cranelift IR of every compiled handler.
        #[arg(long, group = "stage")]
        clif: bool,
    },
    /// Fold synthetic events with the JIT and the interpreter and print events/s.
    Bench {
        /// The `.dmp` program.
        file: PathBuf,
        /// How many events to synthesise.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
    },
}

/// `--engine` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EngineArg {
    /// The Cranelift JIT.
    Jit,
    /// The reference interpreter.
    Interp,
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
            engine,
        } => {
            let options = dmc::RunOptions { allow_unknown };
            let engine = match engine {
                EngineArg::Jit => dmc::Engine::Jit,
                EngineArg::Interp => dmc::Engine::Interp,
            };
            dmc::run_with_engine(&file, &events, options, engine, style, &mut out, &mut err)
        }
        Command::Test { files, engine } => {
            let engine = match engine {
                EngineArg::Jit => dmc::Engine::Jit,
                EngineArg::Interp => dmc::Engine::Interp,
            };
            dmc::test_with_engine(&files, engine, style, &mut out, &mut err)
        }
        Command::Explain {
            file,
            list,
            ast,
            ir,
            clif,
        } => {
            if list {
                for (code, title) in dmc::codes::list() {
                    let _ = writeln!(out, "{code}  {title}");
                }
                return ExitCode::SUCCESS;
            }
            let Some(file) = file else {
                return ExitCode::from(2);
            };
            let text = file.to_string_lossy();
            if dmc::codes::is_code(&text) && !(ast || ir || clif) {
                return match dmc::codes::explain(&text) {
                    Some(page) => {
                        let _ = write!(out, "{page}");
                        ExitCode::SUCCESS
                    }
                    None => {
                        let _ = writeln!(
                            err,
                            "error: no diagnostic {text} (`dmc explain --list` lists them)"
                        );
                        ExitCode::from(2)
                    }
                };
            }
            if !(ast || ir || clif) {
                let _ = writeln!(
                    err,
                    "error: `dmc explain {text}` needs --ast, --ir or --clif (or give a diagnostic code such as E0102)"
                );
                return ExitCode::from(2);
            }
            let stage = if ast {
                dmc::Stage::Ast
            } else if clif {
                dmc::Stage::Clif
            } else {
                dmc::Stage::Ir
            };
            let _ = ir;
            dmc::explain(&file, stage, style, &mut out, &mut err)
        }
        Command::Bench { file, events } => dmc::bench(&file, events, style, &mut out, &mut err),
    };
    ExitCode::from(code)
}

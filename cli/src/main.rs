//! `kms-decommission`: the operator's command line for the kms-decommission stack. It plans,
//! starts, watches, approves, cancels and reports decommissions of AWS KMS custom key stores
//! through the stack's state machines and run ledger (README, "Starting, watching and stopping a
//! decommission"). Credentials, profiles, Regions and endpoints are found as the AWS CLI finds
//! them; the state machines and the ledger from the stack's outputs (`--stack-name`).

mod args;
mod aws;
mod commands;
mod error;
mod render;
mod status;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Output};
use crate::error::{CliError, EXIT_AWS, EXIT_OK};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version exit 0, usage errors 2 (clap's codes).
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    let output = cli.output;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start: {err}");
            return ExitCode::from(EXIT_AWS);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(err) => {
            report_error(&err, output);
            ExitCode::from(err.exit_code())
        }
    }
}

fn report_error(err: &CliError, output: Output) {
    match output {
        Output::Json => commands::emit(&format!("{}\n", render::error_json(err))),
        Output::Text => eprint!("{}", render::error_text(err)),
    }
}

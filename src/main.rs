use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = tokenbridge::cli::Cli::parse();
    match tokenbridge::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(tokenbridge::exit_code(&e))
        }
    }
}

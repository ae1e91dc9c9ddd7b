//! `shutdown-forensics`: what the last stops of a service were, from its state directory.
//!
//! ```text
//! shutdown-forensics last PATH                 the last stop: verdict, waterfall, stuck findings
//! shutdown-forensics history PATH              the last stops, p50/p90/max per phase, the timeout they call for
//! shutdown-forensics mark PATH --reason TEXT   the planned-stop marker, before a deploy stops the service
//! ```
//!
//! `PATH` is the state directory or the flight record itself. Exit codes: 0 done, 1 the input
//! could not be used (one line on stderr says why), 2 a command line it does not understand.
//! Nothing it prints can panic (a closed stdout, as `| head` leaves it, is ignored).

mod history;
mod last;
mod mark;
mod resolve;
mod time;

use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "\
usage: shutdown-forensics last PATH
       shutdown-forensics history PATH
       shutdown-forensics mark PATH --reason TEXT

  last PATH      the last stop: who stopped it, its verdict, its waterfall, where it was stuck
  history PATH   the last stops as a table, p50/p90/max per phase, and the supervisor stop
                 timeout they call for
  mark PATH      write the planned-stop marker for the running service (deploy scripts,
                 ExecStop=, a preStop hook), so its stop logs stop=planned with the reason

PATH is the service's state directory or its flight record. Exit codes: 0 done, 1 the input
could not be used, 2 a command line not understood.
";

/// Writes to stdout, ignoring a closed pipe.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// One line on stderr, ignoring a closed pipe.
fn err(line: &str) {
    let _ = writeln!(std::io::stderr(), "shutdown-forensics: {line}");
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let done = match words.as_slice() {
        ["-h" | "--help" | "help"] => {
            out(USAGE);
            return ExitCode::SUCCESS;
        }
        ["last", path] => last::run(path.as_ref()),
        ["history", path] => history::run(path.as_ref()),
        ["mark", path, "--reason", reason] | ["mark", "--reason", reason, path] => {
            mark::run(path.as_ref(), reason)
        }
        _ => {
            err(&format!(
                "not understood: {}\n{USAGE}",
                if words.is_empty() {
                    "(no command)".to_owned()
                } else {
                    words.join(" ")
                }
            ));
            return ExitCode::from(2);
        }
    };
    match done {
        Ok(text) => {
            // What a record holds is untrusted: no control character reaches the terminal.
            let shown: String = text
                .split('\n')
                .map(last::clean)
                .collect::<Vec<_>>()
                .join("\n");
            out(&shown);
            ExitCode::SUCCESS
        }
        Err(why) => {
            err(&why);
            ExitCode::FAILURE
        }
    }
}

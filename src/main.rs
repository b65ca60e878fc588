//! The `calltrackd` command line: parse arguments, run a command, map errors to exit
//! codes (2: usage, config or filter; 1: runtime). Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use calltrackd::commands::{self, CliError};
use calltrackd::config::{self, Config, Env};
use calltrackd::export::{FilterArgs, Scope};
use clap::{Args, Parser, Subcommand};

/// Self-hosted Twilio call tracking: verified webhooks into SQLite, CSV/XLSX export.
///
/// The config file comes from --config, else $CALLTRACKD_CONFIG, else
/// /etc/calltrackd/config.toml. Secrets are never printed.
#[derive(Parser)]
#[command(name = "calltrackd", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ConfigArg {
    /// Config file [default: $CALLTRACKD_CONFIG, else /etc/calltrackd/config.toml]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn path(&self) -> PathBuf {
        config::resolve_path(self.config.clone())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (systemd runs it so)
    ///
    /// SIGTERM/SIGINT stop it cleanly; SIGHUP reloads [[numbers]], [qualify], [block] and [[notify]].
    Serve {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Load and validate the config, print a summary; exit 0 if valid, 2 if not
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
        /// Also print, per forwarded number, the static TwiML to set as Twilio's
        /// fallback so calls ring through while calltrackd is down
        #[arg(long)]
        fallback_twiml: bool,
    },
    /// Write the calls as CSV or XLSX to stdout or --output
    Export {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        filter: FilterArgs,
        /// csv or xlsx
        #[arg(long, value_name = "csv|xlsx", default_value = "csv")]
        format: String,
        /// Write to this file instead of stdout (it must not exist, unless --force)
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Replace the --output file if it exists
        #[arg(long, requires = "output")]
        force: bool,
    },
    /// Print a read-only export URL for tools that cannot send credentials
    ///
    /// The URL is public_url + /calls.csv (or .xlsx) + a query carrying the filters,
    /// an expiry and a signature keyed by the export token. Changing the token
    /// revokes every link. The user of a link may add from= and to= to narrow it.
    ShareLink {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        scope: Scope,
        /// csv or xlsx
        #[arg(long, value_name = "csv|xlsx", default_value = "csv")]
        format: String,
        /// Days until the link expires
        #[arg(long, value_name = "N", default_value_t = 90)]
        days: i64,
    },
    /// Write a consistent, verified copy of the database to DEST (safe while serving)
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        /// The new file to write (must not exist)
        #[arg(value_name = "DEST")]
        dest: PathBuf,
    },
    /// Decide every stored call again with the config's current rules; print what changed
    ///
    /// Uses the config file's [[numbers]] and [qualify] (user, source, thresholds,
    /// first-time lookback) for every call, and prints each call whose qualified,
    /// outcome, user or source changes (old -> new), then the counts. Safe while the
    /// daemon runs (short transactions). A SIGHUP applies new rules to calls decided
    /// from then on; requalify applies them to the calls already stored.
    Requalify {
        #[command(flatten)]
        config: ConfigArg,
        /// Print what would change; write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Talk to the Twilio account: set the numbers up, check the whole path
    #[command(subcommand)]
    Twilio(TwilioCommand),
    /// Record the calls Twilio has and calltrackd never heard of (default: last 2 days)
    ///
    /// Lists the account's calls to and from each tracking number with Twilio's Calls
    /// API; a call with no stored event is recorded (captured_by = backfill, its
    /// forwarded leg giving answered and talk time), a stored call missing its final
    /// status gets it, nothing else changes. A second run adds nothing. Safe while the
    /// daemon runs. Needs [twilio] account_sid.
    Backfill {
        #[command(flatten)]
        config: ConfigArg,
        /// Calls that started at or after this (YYYY-MM-DD in export.timezone, or RFC 3339)
        #[arg(long, value_name = "D")]
        since: Option<String>,
        /// Calls that started before this (exclusive; same forms) [default: now]
        #[arg(long, value_name = "D")]
        until: Option<String>,
    },
    /// The notifications ([[notify]]): test the targets, list the outbox, retry one
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Print the X-Twilio-Signature Twilio would send for a form POST (for curl tests)
    ///
    /// Each NAME=VALUE is split at its first `=`; values are literal (already
    /// decoded). URL is signed exactly as given. The token is $TWILIO_AUTH_TOKEN
    /// (then no config file is read), else the config's auth token.
    Sign {
        #[command(flatten)]
        config: ConfigArg,
        /// The full URL Twilio requests, e.g. https://calls.example.com/call-tracking/webhook
        #[arg(value_name = "URL")]
        url: String,
        /// Form parameters, e.g. CallSid=CA123 From=+14155550100
        #[arg(value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TwilioCommand {
    /// Point every [[numbers]] number at calltrackd in the Twilio account
    ///
    /// Sets each number's voice URL and status callback to public_url +
    /// /call-tracking/webhook (both POST) and its caller-name lookup from
    /// caller_name_lookup; prints each change (old -> new) before making it. A second
    /// run changes nothing. Needs [twilio] account_sid and [server] public_url.
    Setup {
        #[command(flatten)]
        config: ConfigArg,
        /// Print what would change; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the whole path a call takes; one line per check, with the fix
    ///
    /// Config, the daemon's /healthz, the credentials, each number's URLs and
    /// methods, a fallback URL, and requests refused with 403 in the last 24 hours.
    /// Exit 0 when all pass, 1 otherwise.
    Doctor {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum NotifyCommand {
    /// Send a clearly marked test message to every [[notify]] target; print ok or the error
    Test {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the notification outbox, newest first
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Only the ones given up on
        #[arg(long)]
        failed: bool,
    },
    /// Send a failed notification again now (same body and webhook-id)
    Retry {
        #[command(flatten)]
        config: ConfigArg,
        /// Its id, from `notify list`
        #[arg(value_name = "ID")]
        id: i64,
    },
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve { config } => {
            calltrackd::logging::init().map_err(|e| CliError::usage(e.to_string()))?;
            let env = Env::from_process();
            let cfg = Config::load(&config.path(), &env)?;
            calltrackd::daemon::serve(cfg, env).map_err(|e| CliError::runtime(e.to_string()))
        }
        Command::CheckConfig {
            config,
            fallback_twiml,
        } => commands::check_config(&config.path(), fallback_twiml),
        Command::Export {
            config,
            filter,
            format,
            output,
            force,
        } => commands::export(
            &config.path(),
            &filter,
            Some(&format),
            output.as_deref(),
            force,
        ),
        Command::ShareLink {
            config,
            scope,
            format,
            days,
        } => {
            let url = commands::share_link(&config.path(), &scope, Some(&format), Some(days))?;
            println!("{url}");
            Ok(())
        }
        Command::Backup { config, dest } => {
            let msg = commands::backup(&config.path(), &dest)?;
            println!("{msg}");
            Ok(())
        }
        Command::Requalify { config, dry_run } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            commands::requalify(&config.path(), dry_run, &mut out)
        }
        Command::Twilio(TwilioCommand::Setup { config, dry_run }) => {
            commands::setup(&config.path(), dry_run, &mut std::io::stdout().lock())
        }
        Command::Twilio(TwilioCommand::Doctor { config }) => {
            commands::doctor(&config.path(), &mut std::io::stdout().lock())
        }
        Command::Backfill {
            config,
            since,
            until,
        } => commands::backfill(
            &config.path(),
            since.as_deref(),
            until.as_deref(),
            &mut std::io::stdout().lock(),
        ),
        Command::Notify(NotifyCommand::Test { config }) => {
            commands::notify::test(&config.path(), &mut std::io::stdout().lock())
        }
        Command::Notify(NotifyCommand::List { config, failed }) => {
            commands::notify::list(&config.path(), failed, &mut std::io::stdout().lock())
        }
        Command::Notify(NotifyCommand::Retry { config, id }) => {
            commands::notify::retry(&config.path(), id, &mut std::io::stdout().lock())
        }
        Command::Sign {
            config,
            url,
            params,
        } => {
            let sig = commands::sign(&config.path(), &url, &params)?;
            println!("{sig}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help / --version print and exit 0; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if log::log_enabled!(log::Level::Error) {
                log::error!("{}", e.message);
            } else {
                eprintln!("calltrackd: {}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}

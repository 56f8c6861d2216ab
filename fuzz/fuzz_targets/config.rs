//! Configuration files (`eddy server --config`, `eddy daemon --config`) as `eddy_config::layer`
//! reads them, over options shaped like `ServerArgs` (a skipped `config` path, flattened
//! shared options, addresses, paths, amounts, strings). Asserts: an accepted file sets only
//! known keys and gives what the file alone deserializes to; with flags set, every flag wins
//! and every other setting is the file's; writing the result back as TOML and reading it
//! again gives the same settings; a file with an unknown top-level key is refused as such.
#![no_main]

use std::net::SocketAddr;

use eddy_config::{layer, ConfigError};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

/// Like `Common`: shared options, flattened into both processes' options.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Common {
    network: Option<String>,
    data_dir: Option<std::path::PathBuf>,
    ldk_listen: Option<SocketAddr>,
    lnd_hold_expiry_delta: Option<u32>,
    log_format: Option<String>,
}

/// Like `ServerArgs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Args {
    #[serde(skip)]
    config: Option<std::path::PathBuf>,
    #[serde(flatten)]
    common: Common,
    listen: Option<SocketAddr>,
    base_fee_sat: Option<u64>,
    fee_ppm: Option<u32>,
    expiry_delta: Option<u32>,
    trusted_proxy: Option<std::net::IpAddr>,
    seed_protocol: Option<bool>,
}

const KNOWN: [&str; 11] = [
    "network",
    "data_dir",
    "ldk_listen",
    "lnd_hold_expiry_delta",
    "log_format",
    "listen",
    "base_fee_sat",
    "fee_ppm",
    "expiry_delta",
    "trusted_proxy",
    "seed_protocol",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Some(("fuzz.toml", text));
    let from_file = layer(&Args::default(), file);
    let table: Option<toml::Table> = toml::from_str(text).ok();
    match &from_file {
        Ok(args) => {
            let table = table.as_ref().expect("accepted, so TOML");
            assert!(table.keys().all(|k| KNOWN.contains(&k.as_str())), "{table:?}");
            assert_eq!(args.config, None);
            if let Ok(direct) = toml::from_str::<Args>(text) {
                assert_eq!(&direct, args);
            }
            // Written back and read again: the same settings.
            let written = toml::to_string(args).expect("settings serialize as TOML");
            assert_eq!(
                layer(&Args::default(), Some(("again.toml", &written))).as_ref(),
                Ok(args)
            );
        }
        Err(ConfigError::UnknownKey { key, file }) => {
            assert_eq!(file, "fuzz.toml");
            assert!(!KNOWN.contains(&key.as_str()), "{key}");
        }
        Err(ConfigError::Parse { .. }) => assert!(table.is_none()),
        Err(ConfigError::Invalid(_)) => {}
    }
    if table.is_some_and(|t| t.keys().any(|k| !KNOWN.contains(&k.as_str()))) {
        assert!(
            matches!(&from_file, Err(ConfigError::UnknownKey { .. })),
            "{from_file:?}"
        );
    }
    // Flags over the file.
    let cli = Args {
        config: Some("/etc/eddy.toml".into()),
        common: Common {
            network: Some("regtest".into()),
            ..Common::default()
        },
        fee_ppm: Some(7),
        ..Args::default()
    };
    if let (Ok(args), Ok(file_only)) = (layer(&cli, file), &from_file) {
        assert_eq!(args.common.network.as_deref(), Some("regtest"));
        assert_eq!(args.fee_ppm, Some(7));
        assert_eq!(args.config, None, "the config path is never a setting");
        let mut expect = file_only.clone();
        expect.common.network = Some("regtest".into());
        expect.fee_ppm = Some(7);
        assert_eq!(args, expect);
    }
});

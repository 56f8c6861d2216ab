//! # eddy-config
//!
//! How `eddy server` and `eddy daemon` combine their settings: the command line and the
//! `EDDY_*` environment (already merged by clap into one value of the options type) are laid
//! over the TOML configuration file, which is laid over the defaults. A key the options type
//! does not know is an error, so a typo never silently falls back to a default.
//!
//! This is the one parser of configuration files; it does no I/O (the caller reads the file)
//! and lives apart from the CLI so that `fuzz/` can fuzz it without building the daemons.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file is not TOML.
    #[error("parsing {file}: {reason}")]
    Parse {
        /// The file's name (as the user gave it).
        file: String,
        /// What the TOML parser said.
        reason: String,
    },
    /// The file sets a key the options do not have.
    #[error("{file}: unknown setting {key:?}")]
    UnknownKey {
        /// The file's name.
        file: String,
        /// The key.
        key: String,
    },
    /// The combined settings do not fit the options (a wrong type, a bad value).
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Lays `cli` (flags and environment, already merged by clap) over `file` — `(name, TOML
/// text)` — when given: a value set in `cli` wins, then the file's, then `T::default()`'s
/// (through `T`'s serde defaults). A top-level key of the file that `T::default()` does not
/// serialize is [`ConfigError::UnknownKey`]; fields `T` skips (`#[serde(skip)]`) are unknown
/// keys too.
pub fn layer<T: Serialize + DeserializeOwned + Default>(cli: &T, file: Option<(&str, &str)>) -> Result<T, ConfigError> {
    let invalid = |e: serde_json::Error| ConfigError::Invalid(e.to_string());
    let mut base = match file {
        Some((name, text)) => {
            let t: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Parse {
                file: name.to_owned(),
                reason: e.to_string(),
            })?;
            let v = serde_json::to_value(t).map_err(invalid)?;
            let known = serde_json::to_value(T::default()).map_err(invalid)?;
            if let (Value::Object(file), Value::Object(known)) = (&v, &known) {
                if let Some(k) = file.keys().find(|k| !known.contains_key(*k)) {
                    return Err(ConfigError::UnknownKey {
                        file: name.to_owned(),
                        key: k.clone(),
                    });
                }
            }
            v
        }
        None => Value::Object(Default::default()),
    };
    let over = serde_json::to_value(cli).map_err(invalid)?;
    merge(&mut base, over);
    serde_json::from_value(base).map_err(invalid)
}

/// Lays `over` onto `base`: objects key by key (recursively), `null`s in `over` leave `base`
/// as it is, anything else replaces.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    continue;
                }
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    struct T {
        #[serde(skip)]
        config: Option<String>,
        a: Option<u32>,
        b: Option<String>,
        c: Option<u32>,
    }

    #[test]
    fn flags_over_file_over_defaults_and_unknown_keys_refused() {
        let cli = T {
            b: Some("flag".into()),
            ..T::default()
        };
        let file = Some(("c.toml", "a = 1\nb = \"file\"\n"));
        assert_eq!(
            layer(&cli, file),
            Ok(T {
                config: None,
                a: Some(1),
                b: Some("flag".into()),
                c: None
            })
        );
        assert_eq!(layer(&T::default(), None), Ok(T::default()));
        assert_eq!(
            layer(&cli, Some(("c.toml", "a = 1\nd = 2\n"))),
            Err(ConfigError::UnknownKey {
                file: "c.toml".into(),
                key: "d".into()
            })
        );
        // A skipped field is not a setting of the file.
        assert_eq!(
            layer(&cli, Some(("c.toml", "config = \"x\"\n"))).map_err(|e| e.to_string()),
            Err("c.toml: unknown setting \"config\"".to_owned())
        );
        assert!(matches!(
            layer(&cli, Some(("c.toml", "a = \"one\"\n"))),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            layer(&cli, Some(("c.toml", "a = \n"))),
            Err(ConfigError::Parse { .. })
        ));
    }
}

//! Secrets in the configuration: where a token, password or key comes from, never the value
//! itself. The value is read when a sink starts, from the environment or from a file read as
//! the policies are, and never printed.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// A secret: `{ env: NAME }` or `{ file: /path }` (its content, trailing newline removed), or
/// in YAML's tagged form, `!env NAME`.
#[derive(Clone)]
pub enum Secret {
    /// From this environment variable.
    Env(String),
    /// From this file.
    File(PathBuf),
}

/// Where a secret comes from, a key of its mapping or its tag.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum SecretKey {
    Env,
    File,
}

/// Reads both forms by hand: serde_yaml reads the mapping form of a derived enum only through
/// serde's buffers (the sinks' fields are read so), not from a document it parsed itself, which
/// is how the configuration loader reads a sink again to point at a mistake.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl<'de> serde::de::Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("`{env: NAME}` or `{file: /path}`")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
        let secret = match map.next_key()? {
            Some(SecretKey::Env) => Secret::Env(map.next_value()?),
            Some(SecretKey::File) => Secret::File(map.next_value()?),
            None => return Err(serde::de::Error::invalid_length(0, &self)),
        };
        if map.next_key::<SecretKey>()?.is_some() {
            return Err(serde::de::Error::custom(
                "a secret comes from `env:` or `file:`, not both",
            ));
        }
        Ok(secret)
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Secret, A::Error> {
        use serde::de::VariantAccess;
        Ok(match data.variant()? {
            (SecretKey::Env, v) => Secret::Env(v.newtype_variant()?),
            (SecretKey::File, v) => Secret::File(v.newtype_variant()?),
        })
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Where it comes from is fine to show; what it is never is.
        match self {
            Secret::Env(n) => write!(f, "Secret(env {n})"),
            Secret::File(p) => write!(f, "Secret(file {})", p.display()),
        }
    }
}

impl Secret {
    /// The secret's value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            // Root reads it and sends it away: a file another user can write or link would let
            // them choose what root sends, so it is read as the policies are.
            Secret::File(p) => vigil_safe_fs::read_trusted(p, SECRET_MAX_BYTES)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| e.to_string()),
        }
    }
}

/// The largest secret file read (tokens, passwords and keys are far smaller).
const SECRET_MAX_BYTES: u64 = 64 << 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_others_can_write_or_a_link_to_it_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("vigil-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "t0k3n\n").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Secret::File(token.clone()).read().unwrap(), "t0k3n");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o666)).unwrap();
        let why = Secret::File(token.clone()).read().unwrap_err();
        assert!(why.contains("chmod go-w"), "{why}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_secret_is_read_from_its_mapping_or_its_tag_in_text_and_in_a_parsed_document() {
        for yaml in ["{env: T}", "!env T"] {
            let from_text: Secret = serde_yaml::from_str(yaml).unwrap();
            let doc: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
            let from_doc: Secret = serde_yaml::from_value(doc).unwrap();
            for s in [from_text, from_doc] {
                assert!(matches!(s, Secret::Env(ref n) if n == "T"), "{yaml}: {s:?}");
            }
        }
        let both = serde_yaml::from_str::<Secret>("{env: T, file: /t}").unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        let typo = serde_yaml::from_str::<Secret>("{envv: T}").unwrap_err();
        assert!(
            typo.to_string()
                .contains("unknown field `envv`, expected `env` or `file`"),
            "{typo}"
        );
    }
}

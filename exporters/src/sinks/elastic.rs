//! Elasticsearch / OpenSearch: ECS documents ([`super::ecs`]) through `_bulk` with `create`
//! actions, into a data stream named as Elastic names them, `logs-<dataset>-<namespace>`
//! (`logs-vigil.events-default`), or a dated index (`vigil-2026.11.25`), after installing an
//! index template at the first delivery. The template is vigil's own (`vigil`, for vigil's
//! indices only: the stock `logs-*-*` templates stay as they are) and maps every field vigil
//! writes with its ECS type ([`super::ecs::spec`]), strings vigil adds as keywords. API key or basic authentication,
//! TLS verified (optional CA file). A bulk response's items are read one by one: 429 and 5xx
//! items are retried, others that failed are refused for good (dead letter), 409 (already there,
//! a retried create) counts as delivered. The server's answers are read up to a bound and its
//! words reach reasons and logs clipped and escaped ([`super::http::peer_text`]).

use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    ecs::{to_ecs, EcsContext, HostInfo},
    http::{body_prefix, peer_body, peer_error, peer_text},
    Delivery,
};
use crate::{config::Secret, record::Record};

/// `type: elasticsearch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticConfig {
    /// `https://es.example:9200`.
    pub endpoint: String,
    /// `Authorization: ApiKey <this>`.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Basic authentication user (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic authentication password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Write to this data stream, `logs-<dataset>-<namespace>` (the default,
    /// `logs-vigil.events-default`), or, when `data_stream: false`, to dated indices
    /// `<index>-YYYY.MM.DD`.
    #[serde(default = "default_index")]
    pub index: String,
    /// Use a data stream.
    #[serde(default = "default_true")]
    pub data_stream: bool,
    /// A PEM file of CA certificates, beside the system roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Send secrets (or, for Kafka, events) over an unencrypted connection anyway; the agent
    /// warns once at start. Only for a network you trust.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Request timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The index lifecycle policy vigil's indices roll over and age by (`logs`, the one
    /// Elasticsearch ships for logs data streams); empty for none (OpenSearch, which manages
    /// indices with its own plugin).
    #[serde(default = "default_ilm_policy")]
    pub ilm_policy: String,
}

fn default_ilm_policy() -> String {
    "logs".into()
}

fn default_index() -> String {
    "logs-vigil.events-default".into()
}

/// The dataset of documents written to dated indices.
const DATASET: &str = "vigil.events";

/// The dataset and namespace of a data stream's name, `logs-<dataset>-<namespace>`, as
/// Elastic's naming scheme allows them: lower case, none of `\ / * ? " < > | , # :` or spaces,
/// no `-` inside either, at most 100 bytes each.
fn data_stream_parts(index: &str) -> Result<(&str, &str), String> {
    let allowed = |part: &str| {
        !part.is_empty()
            && part.len() <= 100
            && part.bytes().all(|b| {
                !b.is_ascii_uppercase()
                    && !b"\\/*?\"<>|,#: -".contains(&b)
                    && (b.is_ascii_graphic() || !b.is_ascii())
            })
    };
    index
        .strip_prefix("logs-")
        .and_then(|rest| rest.split_once('-'))
        .filter(|(dataset, namespace)| allowed(dataset) && allowed(namespace))
        .ok_or_else(|| {
            format!(
                "index: `{index}` is not a data stream name: Elastic names them logs-<dataset>-<namespace> (logs-vigil.events-default), both lower case without `-`, spaces or any of \\ / * ? \" < > | , # :; or set data_stream: false for dated indices"
            )
        })
}
fn default_true() -> bool {
    true
}
fn default_timeout() -> u64 {
    10
}

/// Most bytes read of a bulk response to a batch of `len` documents. A response must be parsed
/// whole to learn each document's fate, so the bound follows the batch: a real item is a few
/// hundred bytes, an error item with its reason rarely over 2 KiB, and 8 KiB per document plus
/// 1 MiB leaves room for any real answer (5 MiB for the default batch of 500) while a hostile
/// one costs the agent no more. A fixed bound would either be too small for large batches
/// (their answers would be retried forever) or too large for small ones.
fn bulk_response_max(len: usize) -> usize {
    (1 << 20) + len.saturating_mul(8 << 10)
}

/// The Elasticsearch sink.
pub struct ElasticSink {
    cfg: ElasticConfig,
    base: String,
    auth: Option<String>,
    client: reqwest::Client,
    template_installed: bool,
    ecs: EcsContext,
}

/// `YYYY.MM.DD` of epoch nanoseconds.
fn date(ns: u64) -> String {
    let days = (ns / 86_400_000_000_000) as i64;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}.{m:02}.{d:02}")
}

impl ElasticSink {
    /// A sink for `cfg`.
    pub fn new(cfg: ElasticConfig) -> Result<ElasticSink, String> {
        let client = super::http::client(cfg.timeout_secs, cfg.ca_file.as_deref())?;
        let auth = match (&cfg.api_key, &cfg.username, &cfg.password) {
            (Some(k), _, _) => Some(format!(
                "ApiKey {}",
                k.read().map_err(|e| format!("api_key: {e}"))?
            )),
            (None, Some(u), Some(p)) => {
                use base64::Engine;
                let pw = p.read().map_err(|e| format!("password: {e}"))?;
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"))
                ))
            }
            (None, Some(_), None) => return Err("username needs a password".into()),
            _ => None,
        };
        let ecs = if cfg.data_stream {
            let (dataset, namespace) = data_stream_parts(&cfg.index)?;
            EcsContext::new(HostInfo::read(), dataset, Some(namespace))
        } else {
            EcsContext::new(HostInfo::read(), DATASET, None)
        };
        Ok(ElasticSink {
            base: cfg.endpoint.trim_end_matches('/').to_string(),
            auth,
            client,
            cfg,
            template_installed: false,
            ecs,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.client.request(method, format!("{}{path}", self.base));
        if let Some(a) = &self.auth {
            r = r.header("Authorization", a);
        }
        r
    }

    /// The index template: every field vigil writes with its ECS type, the strings vigil adds
    /// under `vigil.*` as keywords.
    pub fn template(&self) -> Value {
        let pattern = if self.cfg.data_stream {
            self.cfg.index.clone()
        } else {
            format!("{}-*", self.cfg.index)
        };
        let mut properties = super::ecs::spec::mappings();
        if let Some(ns) = &self.ecs.namespace {
            // Known now: fixing them here keeps one odd document from fixing them instead.
            let ds = &mut properties["data_stream"]["properties"];
            ds["type"]["value"] = json!("logs");
            ds["dataset"]["value"] = json!(self.ecs.dataset);
            ds["namespace"]["value"] = json!(ns);
        }
        let mut t = json!({
            "index_patterns": [pattern],
            "priority": 200,
            "_meta": {"description": "vigil's events as ECS documents", "ecs_version": super::ecs::ECS_VERSION},
            "template": {"mappings": {
                // A process argument that looks like a date or a number must not fix the type
                // of a field under vigil.* for every later document.
                "date_detection": false,
                "numeric_detection": false,
                "dynamic_templates": [{"strings_as_keyword": {
                    "match_mapping_type": "string",
                    "mapping": {"type": "keyword", "ignore_above": 1024}
                }}],
                "properties": properties
            }}
        });
        if !self.cfg.ilm_policy.is_empty() {
            t["template"]["settings"] = json!({"index.lifecycle.name": self.cfg.ilm_policy});
        }
        if self.cfg.data_stream {
            t["data_stream"] = json!({});
        }
        t
    }

    /// The template's name: one per index or data stream, so two sinks keep theirs apart.
    pub fn template_name(&self) -> String {
        format!("vigil-{}", self.cfg.index)
    }

    async fn install_template(&mut self) -> Result<(), String> {
        let resp = self
            .request(
                reqwest::Method::PUT,
                &format!("/_index_template/{}", self.template_name()),
            )
            .json(&self.template())
            .send()
            .await
            .map_err(|e| format!("{}: {}", self.base, peer_error(&e)))?;
        let status = resp.status();
        if status.is_success() {
            self.template_installed = true;
            Ok(())
        } else {
            Err(format!(
                "index template: {status}: {}",
                peer_body(resp).await
            ))
        }
    }

    /// The `_bulk` body: a `create` line and the ECS document per record.
    pub fn body(&self, batch: &[Record]) -> Vec<u8> {
        let mut out = Vec::with_capacity(batch.len() * 1500);
        for r in batch {
            let index = if self.cfg.data_stream {
                self.cfg.index.clone()
            } else {
                format!("{}-{}", self.cfg.index, date(r.time_ns))
            };
            let doc = serde_json::from_slice::<Value>(&r.json)
                .map(|v| to_ecs(&v, &self.ecs))
                .unwrap_or(Value::Null);
            let _ = serde_json::to_writer(&mut out, &json!({"create": {"_index": index}}));
            out.push(b'\n');
            let _ = serde_json::to_writer(&mut out, &doc);
            out.push(b'\n');
        }
        out
    }

    /// Sends one batch.
    pub async fn deliver(&mut self, batch: &[Record]) -> Delivery {
        if !self.template_installed {
            if let Err(e) = self.install_template().await {
                return Delivery::Retry(e);
            }
        }
        let resp = match self
            .request(reqwest::Method::POST, "/_bulk")
            .header("Content-Type", "application/x-ndjson")
            .body(self.body(batch))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Delivery::Retry(format!("{}: {}", self.base, peer_error(&e))),
        };
        let status = resp.status().as_u16();
        match status {
            200..=299 => {}
            413 if batch.len() > 1 => return Delivery::TooLarge,
            400 | 413 => {
                return Delivery::refuse_all(
                    batch.len(),
                    format!("bulk {status}: {}", peer_body(resp).await),
                )
            }
            _ => return Delivery::Retry(format!("bulk {status}: {}", peer_body(resp).await)),
        }
        let max = bulk_response_max(batch.len());
        let text = match body_prefix(resp, max).await {
            Ok((text, false)) => text,
            // Which documents were stored is unknown; `create` makes a resend safe.
            Ok((_, true)) => {
                return Delivery::Retry(format!(
                    "the bulk response to {} documents is larger than {max} bytes, the most read for them; sending the batch again",
                    batch.len()
                ))
            }
            Err(e) => {
                return Delivery::Retry(format!(
                    "reading the bulk response: {}",
                    peer_error(&e)
                ))
            }
        };
        let Ok(v) = serde_json::from_slice::<Value>(&text) else {
            return Delivery::Retry(format!("bulk response is not JSON: {}", peer_text(&text)));
        };
        if v["errors"] != json!(true) {
            return Delivery::Delivered;
        }
        bulk_outcome(&v, batch.len())
    }
}

/// What a bulk response with `errors: true` says about a batch of `len` documents. A response
/// that does not describe the batch (no items, another number of items, an item without a
/// status) is retried whole: which documents were stored is unknown, and positions read from
/// it must never index the batch.
fn bulk_outcome(v: &Value, len: usize) -> Delivery {
    let Some(items) = v["items"].as_array() else {
        return Delivery::Retry("bulk response says errors but lists no items".into());
    };
    if items.len() != len {
        return Delivery::Retry(format!(
            "bulk response lists {} items for {len} documents",
            items.len()
        ));
    }
    let (mut retry, mut rejected) = (Vec::new(), Vec::new());
    for (i, item) in items.iter().enumerate() {
        let result = item.as_object().and_then(|o| o.values().next());
        let Some(code) = result.and_then(|r| r["status"].as_u64()) else {
            // No status: whether it was stored is unknown; `create` makes a resend safe.
            retry.push(i);
            continue;
        };
        match code {
            200..=299 | 409 => {}
            429 | 500..=599 => retry.push(i),
            _ => {
                let error = result
                    .map_or(Value::Null, |r| r["error"].clone())
                    .to_string();
                let why = format!("bulk item {code}: {}", peer_text(error.as_bytes()));
                rejected.push((i, why.into()));
            }
        }
    }
    if retry.is_empty() && rejected.is_empty() {
        Delivery::Delivered
    } else {
        Delivery::Partial { retry, rejected }
    }
}

#[cfg(test)]
mod tests {
    use super::{bulk_outcome, data_stream_parts, Delivery};
    use serde_json::json;

    #[test]
    fn a_data_stream_is_named_as_elastic_names_them() {
        assert_eq!(
            data_stream_parts("logs-vigil.events-default"),
            Ok(("vigil.events", "default"))
        );
        for bad in [
            "vigil",
            "logs-vigil",
            "logs-Vigil.events-default",
            "logs-my-app-prod",
            "logs-vigil events-default",
            "logs-vigil.events-",
            "logs-vigil:x-default",
        ] {
            let e = data_stream_parts(bad).unwrap_err();
            assert!(
                e.contains(bad) && e.contains("logs-<dataset>-<namespace>"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_bulk_response_that_does_not_describe_the_batch_is_retried() {
        let item = |s: u64| json!({"create": {"status": s}});
        for v in [
            json!({"errors": true}),
            json!({"errors": true, "items": {}}),
            json!({"errors": true, "items": [item(201), item(400), item(429)]}),
            json!({"errors": true, "items": []}),
        ] {
            assert!(matches!(bulk_outcome(&v, 1), Delivery::Retry(_)), "{v}");
        }
        let v = json!({"errors": true, "items": [{"create": {}}, 7, item(400), item(409)]});
        let Delivery::Partial { retry, rejected } = bulk_outcome(&v, 4) else {
            panic!()
        };
        assert_eq!(retry, vec![0, 1]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 2);
    }

    #[test]
    fn dated_indices_use_the_events_day() {
        assert_eq!(super::date(1_795_600_800_123_456_789), "2026.11.25");
        assert_eq!(super::date(0), "1970.01.01");
    }
}

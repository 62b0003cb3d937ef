//! What headway sees, from its admin `/clusters`: one line per cluster, printed whenever it
//! changes, so the user watches headway follow DNS and health checks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::http;
use crate::say;

/// How often the follower asks headway.
const POLL: Duration = Duration::from_millis(500);

/// `(cluster, "service1: 127.0.0.11:8080 up, 127.0.0.12:8080 probing")` for each cluster.
pub fn summarize(clusters: &Value) -> Vec<(String, String)> {
    let Some(clusters) = clusters["clusters"].as_array() else {
        return Vec::new();
    };
    clusters
        .iter()
        .map(|cluster| {
            let name = cluster["name"].as_str().unwrap_or("?").to_owned();
            let backends: Vec<String> = cluster["backends"]
                .as_array()
                .map(|list| list.iter().map(backend_state).collect())
                .unwrap_or_default();
            let line = if backends.is_empty() {
                format!("{name}: no backends (requests get 503)")
            } else {
                format!("{name}: {}", backends.join(", "))
            };
            (name, line)
        })
        .collect()
}

/// `127.0.0.11:8080 up` (gets traffic), `probing` (new, first health check pending), `down`.
fn backend_state(backend: &Value) -> String {
    let address = backend["address"].as_str().unwrap_or("?");
    let state = if backend["healthy"] == true {
        "up"
    } else if backend["probed"] == false {
        "probing"
    } else {
        "down"
    };
    format!("{address} {state}")
}

/// Fetches headway's `/clusters`.
pub async fn clusters(admin: SocketAddr) -> Result<Value, String> {
    let response = http::get(admin, "/clusters", Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())?;
    if response.status != 200 {
        return Err(format!("/clusters answered {}", response.status));
    }
    serde_json::from_str(&response.body).map_err(|e| format!("/clusters: {e}"))
}

/// Prints `[headway] <line>` for each cluster whose line changed, until the task is aborted.
pub async fn follow(admin: SocketAddr) {
    let mut last: HashMap<String, String> = HashMap::new();
    loop {
        if let Ok(json) = clusters(admin).await {
            for (cluster, line) in summarize(&json) {
                if last.get(&cluster) != Some(&line) {
                    say!("[headway] {line}");
                    last.insert(cluster, line);
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_cluster() {
        let json = serde_json::json!({"clusters": [
            {"name": "service1", "backends": [
                {"address": "127.0.0.11:8080", "healthy": true, "probed": true},
                {"address": "127.0.0.12:8080", "healthy": false, "probed": false},
                {"address": "127.0.0.13:8080", "healthy": false, "probed": true},
            ]},
            {"name": "service2", "backends": []},
        ]});
        assert_eq!(
            summarize(&json),
            vec![
                (
                    "service1".to_owned(),
                    "service1: 127.0.0.11:8080 up, 127.0.0.12:8080 probing, 127.0.0.13:8080 down"
                        .to_owned()
                ),
                (
                    "service2".to_owned(),
                    "service2: no backends (requests get 503)".to_owned()
                ),
            ]
        );
    }
}

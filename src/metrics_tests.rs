//! Unit test of the metrics: every series registers and encodes.

use crate::metrics::Metrics;

#[test]
fn every_series_registers_and_encodes() {
    let m = Metrics::new().unwrap();
    let c = m.cluster("service1");
    c.retries.inc();
    c.upstream_duration.observe(0.002);
    let tick = Some(std::time::Duration::from_millis(1));
    m.route("service1", "/service/1").count(200, tick);
    m.route("service1", "/service/1").count(503, tick);
    m.route("none", "none").count(0, tick);
    let text = m.encode();
    for line in [
        "headway_requests_total{cluster=\"service1\",code=\"2xx\",route=\"/service/1\"} 1",
        "headway_requests_total{cluster=\"service1\",code=\"5xx\",route=\"/service/1\"} 1",
        "headway_requests_total{cluster=\"none\",code=\"none\",route=\"none\"} 1",
        "headway_upstream_retries_total{cluster=\"service1\"} 1",
        "headway_upstream_response_seconds_count{cluster=\"service1\"} 1",
        "headway_dns_refreshes_total{cluster=\"service1\",result=\"error\"} 0",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

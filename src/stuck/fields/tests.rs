use super::captured::RENDER_MAX;
use super::*;
use crate::timeline::layer::ShutdownLayer;
use std::net::SocketAddr;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// Runs `f` with a registry and the layer as the default subscriber; returns what `f` returns,
/// the captured fields of the span it names (from its extension, else from its table slot),
/// and whether they are in the slot (short fields: no extension, no allocation).
fn with_span<T>(f: impl FnOnce() -> (T, tracing::Span)) -> (T, Option<Captured>, bool) {
    let layer = ShutdownLayer::new();
    let shared = std::sync::Arc::clone(layer.timeline());
    let d = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&d, || {
        let (out, span) = f();
        let id = span.id().expect("an enabled span");
        let registry = d.downcast_ref::<tracing_subscriber::Registry>().unwrap();
        let data = registry.span(&id).unwrap();
        let ext = data.extensions();
        let from_ext = ext.get::<SpanFields>().map(SpanFields::captured);
        let from_slot = crate::stuck::views::slot_fields_of(&shared.spans, id.into_u64());
        let in_slot = from_ext.is_none() && from_slot.is_some();
        (out, from_ext.or(from_slot), in_slot)
    })
}

fn captured(pairs: &[(&str, &str)]) -> Captured {
    Captured {
        pairs: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned(), false))
            .collect(),
        dropped: 0,
    }
}

#[test]
fn fields_are_captured_raw_and_rendered_quoted_where_they_hold_separators() {
    let ((), fields, inline) = with_span(|| {
        let span = tracing::info_span!(
            "request",
            method = "POST",
            path = %"/upload",
            peer = %"127.0.0.1:5555".parse::<SocketAddr>().unwrap(),
            n = 3,
            ok = true,
            ua = "x} idle 0.1s; 10.9.9.9:5432 ESTABLISHED no data for 999.0s; ",
        );
        ((), span)
    });
    let fields = fields.expect("captured without any formatter");
    assert!(!inline, "six fields, 120 bytes: in the extension");
    assert_eq!(fields.pairs[0], ("method".into(), "POST".into(), false));
    assert_eq!(
        fields.render(),
        r#"method=POST path=/upload peer=127.0.0.1:5555 n=3 ok=true ua="x} idle 0.1s; 10.9.9.9:5432 ESTABLISHED no data for 999.0s; ""#
    );
    // Short fields stay in the span's table slot: no extension, no allocation.
    let ((), short, inline) =
        with_span(|| ((), tracing::info_span!("request", method = "GET", id = 7)));
    assert!(inline);
    assert_eq!(short.unwrap().render(), "method=GET id=7");
}

#[test]
fn separators_and_hidden_characters_are_quoted_and_escaped() {
    for (raw, shown) in [
        ("a;b", r#"v="a;b""#),
        ("a{b", r#"v="a{b""#),
        ("a}b", r#"v="a}b""#),
        ("a=b", r#"v="a=b""#),
        ("x\nERROR \u{1b}[31m", r#"v="x\nERROR \u{1b}[31m""#),
        ("", r#"v="""#),
        ("plain/path:80", "v=plain/path:80"),
    ] {
        assert_eq!(captured(&[("v", raw)]).render(), shown, "{raw:?}");
    }
    // A hostile name cannot end the pair or the braces.
    assert_eq!(captured(&[("a b=c}", "1")]).render(), "a_b_c_=1");
}

#[test]
fn fields_recorded_later_replace_their_value() {
    let ((), fields, _) = with_span(|| {
        let span = tracing::info_span!(
            "request",
            method = "GET",
            status = tracing::field::Empty,
            peer = tracing::field::Empty
        );
        span.record("status", 500);
        span.record("status", 200);
        span.record("peer", "10.0.0.7:5432");
        ((), span)
    });
    let fields = fields.unwrap();
    assert_eq!(fields.render(), "method=GET status=200 peer=10.0.0.7:5432");
    assert_eq!(
        fields.addresses(),
        vec!["10.0.0.7:5432".parse::<SocketAddr>().unwrap()]
    );
    // Every field `Empty` at first: captured when recorded.
    let ((), late, _) = with_span(|| {
        let span = tracing::info_span!("conn", peer = tracing::field::Empty);
        span.record("peer", "10.0.0.8:1");
        ((), span)
    });
    assert_eq!(late.unwrap().render(), "peer=10.0.0.8:1");
}

#[test]
fn values_names_and_counts_are_bounded() {
    let long = "é".repeat(200); // 400 bytes
    let ((), fields, _) = with_span(|| ((), tracing::info_span!("request", body = %long)));
    let fields = fields.unwrap();
    let (_, v, cut) = &fields.pairs[0];
    assert!(
        *cut && v.len() <= VALUE_MAX && v.chars().all(|c| c == 'é'),
        "{v}"
    );
    assert_eq!(fields.render(), format!("body={v}..."));

    let ((), many, _) = with_span(|| {
        let span = tracing::info_span!(
            "many",
            a0 = 0,
            a1 = 1,
            a2 = 2,
            a3 = 3,
            a4 = 4,
            a5 = 5,
            a6 = 6,
            a7 = 7,
            a8 = 8,
            a9 = 9,
            a10 = 10,
            a11 = 11,
            a12 = 12,
            a13 = 13,
            a14 = 14,
            a15 = 15,
            a16 = 16,
            a17 = 17
        );
        ((), span)
    });
    let many = many.unwrap();
    assert_eq!(many.pairs.len(), MAX_FIELDS);
    assert_eq!(many.dropped, 2);
    assert!(many.render().ends_with("a15=15 ..."), "{}", many.render());

    // Twelve 128-byte values: at most TOTAL_MAX bytes kept, the rest counted.
    let v = "v".repeat(200);
    let ((), big, _) = with_span(|| {
        let span = tracing::info_span!(
            "big", b0 = %v, b1 = %v, b2 = %v, b3 = %v, b4 = %v, b5 = %v, b6 = %v, b7 = %v,
            b8 = %v, b9 = %v, b10 = %v, b11 = %v
        );
        ((), span)
    });
    let big = big.unwrap();
    let kept: usize = big
        .pairs
        .iter()
        .map(|(k, v, _)| k.len() + v.len() + 3)
        .sum();
    assert!(kept <= TOTAL_MAX, "{kept}");
    assert!(big.dropped > 0);
    assert!(big.render().chars().count() <= RENDER_MAX + 4);
    assert!(big.render().ends_with(" ..."));
}

#[test]
fn joins_use_known_keys_or_whole_values_never_words_of_free_text() {
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    // A client-controlled header holding an address inside free text names no socket.
    let ua = captured(&[("method", "GET"), ("ua", "curl/8.5 (x=10.0.0.7:5432)")]);
    assert!(ua.addresses().is_empty());
    assert!(
        captured(&[("path", "/x:y"), ("msg", "to 10.0.0.7:5432 now")])
            .addresses()
            .is_empty()
    );
    // A known key: its whole value.
    let peer = captured(&[
        ("ua", "curl/8.5 (x=10.0.0.7:5432)"),
        ("peer", "127.0.0.1:5555"),
    ]);
    assert_eq!(peer.addresses(), vec![addr("127.0.0.1:5555")]);
    // A known key wins over another field whose whole value is an address (a Host header).
    let host = captured(&[("host", "10.0.0.7:5432"), ("remote_addr", "[::1]:80")]);
    assert_eq!(host.addresses(), vec![addr("[::1]:80")]);
    // OpenTelemetry's address and port in two fields; IPv4-mapped addresses canonical.
    let otel = captured(&[
        ("client.address", "::ffff:10.1.2.3"),
        ("client.port", "443"),
    ]);
    assert_eq!(otel.addresses(), vec![addr("10.1.2.3:443")]);
    // No known key: any field whose whole value is an address (quoted by `?`, too).
    let whole = captured(&[("db", "\"10.0.0.7:5432\""), ("upstream_name", "x")]);
    assert_eq!(whole.addresses(), vec![addr("10.0.0.7:5432")]);
    // A value that was cut is not an address.
    let mut cut = captured(&[("peer", "10.0.0.7:54")]);
    cut.pairs[0].2 = true;
    assert!(cut.addresses().is_empty());
}

#[test]
fn numbers_render_as_fmt_shows_them() {
    let ((), fields, _) = with_span(|| {
        let span = tracing::info_span!(
            "n",
            zero = 0u64,
            neg = -42i64,
            min = i64::MIN,
            max = u64::MAX,
            pos = 7i64,
            half = 0.5f64,
            whole = 2.0f64,
            no = false
        );
        ((), span)
    });
    assert_eq!(
        fields.unwrap().render(),
        format!(
            "zero=0 neg=-42 min={} max={} pos=7 half=0.5 whole=2.0 no=false",
            i64::MIN,
            u64::MAX
        )
    );
}

#[test]
fn the_extension_stays_small() {
    // One allocation of this size per span with fields (the registry boxes extensions: with
    // glibc's 8-byte header, one 128-byte chunk); more only when the values outgrow the inline
    // bytes.
    assert!(
        std::mem::size_of::<SpanFields>() <= 120,
        "{}",
        std::mem::size_of::<SpanFields>()
    );
}

#[test]
fn values_of_fields_named_like_secrets_are_never_rendered() {
    let f = captured(&[
        ("user", "alice"),
        ("password", "hunter2"),
        ("access_token", "eyJhbGciOi"),
        ("http.request.header.authorization", "Bearer abc"),
        ("Cookie", "sid=1"),
    ]);
    let shown = f.render();
    assert_eq!(
        shown,
        "user=alice password=<redacted> access_token=<redacted> \
         http.request.header.authorization=<redacted> Cookie=<redacted>"
    );
    for secret in ["hunter2", "eyJhbGciOi", "Bearer", "sid=1"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

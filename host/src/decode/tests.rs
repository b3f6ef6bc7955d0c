use super::*;
use crate::config::DecodeConfig;

fn decoder() -> Decoder {
    Decoder::new(Format::Json, &DecodeConfig::default()).unwrap()
}

const GOOD: &str = r#"{"transaction_id":"t1","customer_id":"c1","account_id":"a1","merchant_id":"m1","transaction_type":"PURCHASE","status":"completed","amount":"123.45","fee_amount":1.5,"currency":"EUR","channel":"web","device_fingerprint":"d1","location":{"country":"DE","city":"Berlin"},"risk_score":25,"compliance_flags":["HIGH_RISK"],"created_at":"2026-01-01T10:00:00Z"}"#;

#[test]
fn decodes_the_reference_shape() {
    let mut s = Interner::default();
    let t = decoder().decode(GOOD.as_bytes(), &mut s).unwrap();
    assert_eq!(&*t.id, "t1");
    assert_eq!(s.resolve(t.customer), "c1");
    assert_eq!(t.kind, Kind::Purchase);
    assert_eq!(t.amount, Decimal::new(12345, 2));
    assert_eq!(t.fee, Decimal::new(15, 1));
    assert_eq!(s.resolve(t.country), "DE");
    assert_eq!(s.resolve(t.city), "Berlin");
    assert_eq!(t.risk_score, Some(0.25));
    assert_eq!(t.risk_level, Some(RiskLevel::Low));
    assert_eq!(t.flags.len(), 1);
    assert_eq!(t.event_time, 1_767_261_600_000);
}

#[test]
fn number_amounts_stay_exact() {
    let mut s = Interner::default();
    let line = GOOD.replace(r#""amount":"123.45""#, r#""amount":0.1"#);
    let t = decoder().decode(line.as_bytes(), &mut s).unwrap();
    assert_eq!(t.amount.to_string(), "0.1");
}

#[test]
fn plain_amounts_decode_as_the_general_parser_reads_them() {
    let mut s = Interner::default();
    let d = decoder();
    let max = DecodeConfig::default().max_amount;
    for text in [
        "0",
        "7",
        "007",
        "19.90",
        "0.00000001",
        "1.5000",
        "12345678.12345678",
        "999999999999999999",
        "99999999999999999.9",
        "1000000000",
        "1000000000.00000000",
        "1000000000.00000001",
        "1.",
        ".5",
        "1.2.3",
        "1e3",
        " 12",
        "+1",
        "-0",
        "0.123456789",
        "12a",
    ] {
        let line = GOOD.replace(r#""123.45""#, &format!("{text:?}"));
        let decoded = d.decode(line.as_bytes(), &mut s).ok().map(|t| t.amount);
        let general = parse_decimal(text.trim())
            .filter(|a| *a <= max)
            .map(|a| if a.scale() > 8 { a.normalize() } else { a })
            .filter(|a| (a.is_zero() || !a.is_sign_negative()) && a.scale() <= 8);
        assert_eq!(
            decoded.map(|a| a.to_string()),
            general.map(|a| a.to_string()),
            "{text}"
        );
    }
    assert_eq!(plain_decimal(b"19.90"), Some((1990, 2)));
    for text in [
        "1.",
        ".5",
        "1e3",
        " 12",
        "+1",
        "-0",
        "0.123456789",
        "",
        "1234567890123456789",
    ] {
        assert_eq!(plain_decimal(text.as_bytes()), None, "{text}");
    }
}

fn reject(line: &[u8]) -> RejectCode {
    let mut s = Interner::default();
    decoder().decode(line, &mut s).unwrap_err().code
}

#[test]
fn every_bad_input_has_its_reason() {
    let cases: Vec<(Vec<u8>, RejectCode)> = vec![
        (b"{not json".to_vec(), RejectCode::MalformedJson),
        (GOOD.as_bytes()[..40].to_vec(), RejectCode::MalformedJson),
        (b"[1,2]".to_vec(), RejectCode::MalformedJson),
        (
            GOOD.replace(r#""customer_id":"c1","#, "").into_bytes(),
            RejectCode::MissingField,
        ),
        (
            GOOD.replace(r#""transaction_id":"t1""#, r#""transaction_id":"""#)
                .into_bytes(),
            RejectCode::MissingField,
        ),
        (
            GOOD.replace(r#""customer_id":"c1""#, r#""customer_id":{"a":1}"#)
                .into_bytes(),
            RejectCode::WrongType,
        ),
        (
            GOOD.replace("\"123.45\"", "\"abc\"").into_bytes(),
            RejectCode::InvalidAmount,
        ),
        (
            GOOD.replace("\"123.45\"", "true").into_bytes(),
            RejectCode::InvalidAmount,
        ),
        (
            GOOD.replace("\"123.45\"", "-5").into_bytes(),
            RejectCode::NegativeAmount,
        ),
        (
            GOOD.replace("\"123.45\"", "1e20").into_bytes(),
            RejectCode::AbsurdAmount,
        ),
        (
            GOOD.replace("PURCHASE", "TELEPORT").into_bytes(),
            RejectCode::UnknownKind,
        ),
        (
            GOOD.replace("\"completed\"", "\"lost\"").into_bytes(),
            RejectCode::UnknownStatus,
        ),
        (
            GOOD.replace("2026-01-01T10:00:00Z", "yesterday")
                .into_bytes(),
            RejectCode::InvalidTime,
        ),
        (
            GOOD.replace("2026-01-01T10:00:00Z", "1970-01-01T00:00:00Z")
                .into_bytes(),
            RejectCode::TimeOutOfRange,
        ),
        (
            GOOD.replace("2026-01-01T10:00:00Z", "2999-01-01T00:00:00Z")
                .into_bytes(),
            RejectCode::TimeOutOfRange,
        ),
        (
            GOOD.replace(r#""risk_score":25"#, r#""risk_score":170"#)
                .into_bytes(),
            RejectCode::InvalidRiskScore,
        ),
        (
            GOOD.replace(r#""risk_score":25"#, r#""risk_score":-1"#)
                .into_bytes(),
            RejectCode::InvalidRiskScore,
        ),
        (
            GOOD.replace(
                r#""risk_score":25"#,
                r#""risk_score":25,"risk_level":"EXTREME""#,
            )
            .into_bytes(),
            RejectCode::InvalidRiskLevel,
        ),
        (
            GOOD.replace(
                r#""customer_id":"c1""#,
                &format!(r#""customer_id":"{}""#, "c".repeat(257)),
            )
            .into_bytes(),
            RejectCode::FieldTooLong,
        ),
        (
            GOOD.replace(
                r#""transaction_id":"t1""#,
                &format!(r#""transaction_id":"{}""#, "t".repeat(300)),
            )
            .into_bytes(),
            RejectCode::FieldTooLong,
        ),
        (
            GOOD.replace(r#"["HIGH_RISK"]"#, &format!(r#"["{}"]"#, "F".repeat(300)))
                .into_bytes(),
            RejectCode::FieldTooLong,
        ),
        (
            GOOD.replace(
                r#""city":"Berlin""#,
                &format!(r#""city":"{}""#, "é".repeat(200)),
            )
            .into_bytes(),
            RejectCode::FieldTooLong,
        ),
        (
            GOOD.replace(r#"["HIGH_RISK"]"#, "[1]").into_bytes(),
            RejectCode::WrongType,
        ),
        (vec![b'{', 0xff, 0xfe, b'}'], RejectCode::InvalidUtf8),
        (
            format!(r#"{{"pad":"{}"}}"#, "x".repeat(70_000)).into_bytes(),
            RejectCode::Oversized,
        ),
    ];
    for (line, code) in cases {
        assert_eq!(
            reject(&line),
            code,
            "{}",
            String::from_utf8_lossy(&line[..line.len().min(120)])
        );
    }
}

#[test]
fn reference_scale_scores_are_accepted_and_graded_as_the_reference_grades_them() {
    let mut s = Interner::default();
    let d = decoder();
    let decode = |d: &Decoder, s: &mut Interner, from: &str, to: &str| {
        d.decode(GOOD.replace(from, to).as_bytes(), s)
    };
    for (score, level, canonical) in [
        ("0", RiskLevel::Low, 0.0),
        ("30", RiskLevel::Low, 0.3),
        ("30.1", RiskLevel::Medium, 0.301),
        ("60", RiskLevel::Medium, 0.6),
        ("60.5", RiskLevel::High, 0.605),
        ("80", RiskLevel::High, 0.8),
        ("80.01", RiskLevel::Critical, 0.8001),
        ("100", RiskLevel::Critical, 1.0),
    ] {
        let t = decode(
            &d,
            &mut s,
            r#""risk_score":25"#,
            &format!(r#""risk_score":{score}"#),
        )
        .unwrap();
        assert_eq!(t.risk_level, Some(level), "{score}");
        assert!((t.risk_score.unwrap() - canonical).abs() < 1e-12, "{score}");
    }
    // The record's own level is read when present, in any case.
    let t = decode(
        &d,
        &mut s,
        r#""risk_score":25"#,
        r#""risk_score":25,"risk_level":"critical""#,
    )
    .unwrap();
    assert_eq!(t.risk_level, Some(RiskLevel::Critical));
    let t = decode(&d, &mut s, r#""risk_score":25"#, r#""risk_level":"High""#).unwrap();
    assert_eq!((t.risk_score, t.risk_level), (None, Some(RiskLevel::High)));
    let t = decode(&d, &mut s, r#""risk_score":25,"#, "").unwrap();
    assert_eq!((t.risk_score, t.risk_level), (None, None));
    // On the 0 to 1 scale, with thresholds of its own.
    let config = DecodeConfig {
        risk_score_scale: 1,
        ..DecodeConfig::default()
    };
    let unit = Decoder::new(Format::Json, &config).unwrap();
    let t = decode(&unit, &mut s, r#""risk_score":25"#, r#""risk_score":0.85"#).unwrap();
    assert_eq!(
        (t.risk_score, t.risk_level),
        (Some(0.85), Some(RiskLevel::Critical))
    );
    let err = decode(&unit, &mut s, r#""risk_score":25"#, r#""risk_score":25"#).unwrap_err();
    assert_eq!(err.code, RejectCode::InvalidRiskScore);
    assert!(err.detail.contains("outside [0, 1]"), "{}", err.detail);
    let config = DecodeConfig {
        risk_levels: Some(crate::config::RiskLevels {
            medium: 10.0,
            high: 20.0,
            critical: 90.0,
        }),
        ..DecodeConfig::default()
    };
    let custom = Decoder::new(Format::Json, &config).unwrap();
    let t = custom.decode(GOOD.as_bytes(), &mut s).unwrap();
    assert_eq!(t.risk_level, Some(RiskLevel::High));
}

#[test]
fn the_clock_is_read_as_time_passes() {
    let mut s = Interner::default();
    let mut d = decoder();
    let day = 86_400_000;
    let start = 1_800_000_000_000;
    let at = |ms: i64| {
        GOOD.replace(
            r#""created_at":"2026-01-01T10:00:00Z""#,
            &format!(r#""created_at":{ms}"#),
        )
    };
    d.set_now(start);
    assert!(d.decode(at(start).as_bytes(), &mut s).is_ok());
    let err = d
        .decode(at(start + 2 * day).as_bytes(), &mut s)
        .unwrap_err();
    assert_eq!(err.code, RejectCode::TimeOutOfRange);
    // Two days later, events of that time are current.
    d.set_now(start + 2 * day);
    assert!(d.decode(at(start + 2 * day).as_bytes(), &mut s).is_ok());
    // Minutes ahead of the clock are refused by default.
    let err = d
        .decode(at(start + 2 * day + 10 * 60_000).as_bytes(), &mut s)
        .unwrap_err();
    assert_eq!(err.code, RejectCode::TimeOutOfRange);
}

#[test]
fn mapping_reads_other_shapes() {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("customer_id".to_string(), "user.id".to_string());
    fields.insert("amount".to_string(), "money.value".to_string());
    let config = DecodeConfig {
        fields,
        ..DecodeConfig::default()
    };
    let d = Decoder::new(Format::Json, &config).unwrap();
    let mut s = Interner::default();
    let line = r#"{"transaction_id":"x","user":{"id":"u9"},"money":{"value":"7.10"},"transaction_type":"deposit","created_at":1767225600000}"#;
    let t = d.decode(line.as_bytes(), &mut s).unwrap();
    assert_eq!(s.resolve(t.customer), "u9");
    assert_eq!(t.amount, Decimal::new(71, 1));

    let mut bad = std::collections::BTreeMap::new();
    bad.insert("customer".to_string(), "x".to_string());
    let err = Decoder::new(
        Format::Json,
        &DecodeConfig {
            fields: bad,
            ..DecodeConfig::default()
        },
    )
    .err()
    .unwrap();
    assert!(err.contains("unknown field \"customer\""), "{err}");
}

#[test]
fn csv_rows_decode_and_misfits_are_rejected() {
    let mut d = Decoder::new(Format::Csv, &DecodeConfig::default()).unwrap();
    let header = b"transaction_id,customer_id,transaction_type,amount,country,city,compliance_flags,created_at";
    assert!(d.take_header(header).unwrap());
    let mut s = Interner::default();
    let t = d
        .decode(
            b"t1,c1,transfer,\"1,000.00\",FR,Paris,HIGH_VALUE|HIGH_RISK,2026-01-01T00:00:00Z",
            &mut s,
        )
        .unwrap_err();
    assert_eq!(t.code, RejectCode::InvalidAmount);
    let t = d
        .decode(
            b"t1,c1,transfer,1000.00,FR,Paris,HIGH_VALUE|HIGH_RISK,2026-01-01T00:00:00Z",
            &mut s,
        )
        .unwrap();
    assert_eq!(t.flags.len(), 2);
    assert_eq!(s.resolve(t.city), "Paris");
    assert_eq!(
        d.decode(b"t2,c1", &mut s).unwrap_err().code,
        RejectCode::MalformedCsv
    );
}

/// The one-pass reader of the reference shape and the general reader give
/// the same event or the same reason, on generated traffic (a third of it
/// dirty) and on the hand-made edge cases.
#[test]
fn the_one_pass_reader_agrees_with_the_general_one() {
    let d = decoder();
    let config = crate::config::GeneratorConfig {
        dirty: 0.3,
        ..Default::default()
    };
    let mut g = crate::gen::Generator::new(&config);
    let mut lines: Vec<Vec<u8>> = (0..5_000).map(|_| g.next_record().bytes).collect();
    for (from, to) in [
        (r#""amount":"123.45""#, r#""amount":123.45"#),
        (r#""customer_id":"c1""#, r#""customer_id":17"#),
        (r#""customer_id":"c1""#, r#""customer_id":"c\u0031""#),
        (r#""customer_id":"c1""#, r#""customer_id":null"#),
        (
            r#""customer_id":"c1""#,
            r#""customer_id":"c1","customer_id":"c2""#,
        ),
        (r#""channel":"web""#, r#""channel":"  ""#),
        (
            r#""location":{"country":"DE","city":"Berlin"}"#,
            r#""location":"DE""#,
        ),
        (
            r#""location":{"country":"DE","city":"Berlin"}"#,
            r#""location":null"#,
        ),
        (
            r#""location":{"country":"DE","city":"Berlin"}"#,
            r#""location":{"country":49}"#,
        ),
        (
            r#""compliance_flags":["HIGH_RISK"]"#,
            r#""compliance_flags":null"#,
        ),
        (
            r#""compliance_flags":["HIGH_RISK"]"#,
            r#""compliance_flags":[1]"#,
        ),
        (r#""risk_score":25"#, r#""risk_score":"25""#),
        (
            r#""risk_score":25"#,
            r#""risk_score":25,"risk_level":"critical""#,
        ),
        (r#""risk_score":25"#, r#""risk_level":"HIGH""#),
        (r#""risk_score":25"#, r#""risk_score":25,"risk_level":7"#),
        (
            r#""risk_score":25"#,
            r#""risk_score":25,"risk_level":"NONE""#,
        ),
        (
            r#""created_at":"2026-01-01T10:00:00Z""#,
            r#""created_at":1767261600000"#,
        ),
        (r#""status":"completed""#, r#""status":false"#),
        (r#""amount":"123.45""#, r#""amount":-0"#),
        (r#""amount":"123.45""#, r#""amount":12345"#),
        (r#""amount":"123.45""#, r#""amount":1e2"#),
        (r#""amount":"123.45""#, r#""amount":"1.5e2""#),
        (r#""risk_score":25"#, r#""risk_score":100"#),
        (r#""risk_score":25"#, r#""risk_score":100.5"#),
        (
            r#""risk_score":25"#,
            r#""risk_score":10.000000000000000055511151231257827"#,
        ),
        (r#""risk_score":25"#, r#""risk_score":2.5e1"#),
        (
            r#""created_at":"2026-01-01T10:00:00Z""#,
            r#""created_at":1767261600000.4"#,
        ),
        (
            r#""created_at":"2026-01-01T10:00:00Z""#,
            r#""created_at":"1767261600000""#,
        ),
        (r#""customer_id":"c1""#, r#""customer_id":"c\"1\u00e9""#),
        (r#""city":"Berlin""#, r#""city":"Berlin","city":"Paris""#),
        (r#""city":"Berlin""#, r#""city":"Berlin","zip":{"a":[1]}"#),
        (
            r#""compliance_flags":["HIGH_RISK"]"#,
            r#""compliance_flags":["A","B\n",""]"#,
        ),
        (
            r#""compliance_flags":["HIGH_RISK"]"#,
            r#""compliance_flags":[["A"]]"#,
        ),
        (
            r#""compliance_flags":["HIGH_RISK"]"#,
            r#""compliance_flags":"HIGH_RISK""#,
        ),
        (
            r#""created_at":"2026-01-01T10:00:00Z"}"#,
            r#""created_at":"2026-01-01T10:00:00Z"} x"#,
        ),
        (
            r#""created_at":"2026-01-01T10:00:00Z"}"#,
            r#""created_at":"2026-01-01T10:00:00Z"}{}"#,
        ),
        (r#""amount":"123.45""#, r#""amount" : 0123"#),
        (r#""amount":"123.45""#, r#""amount":1."#),
        (r#""amount":"123.45""#, r#""amount":-"#),
        (r#""amount":"123.45""#, r#""amount":12.5E+1"#),
        (r#""amount":"123.45""#, r#""amount":99999999999999999999"#),
        (
            r#""created_at":"2026-01-01T10:00:00Z""#,
            r#""created_at":99999999999999999999"#,
        ),
        (
            r#""created_at":"2026-01-01T10:00:00Z""#,
            r#""created_at":-1"#,
        ),
        (r#""customer_id":"c1""#, " \"customer_id\" :\t\"c1\"\r\n "),
        (r#""customer_id":"c1""#, r#""customer_id""c1""#),
        (r#""city":"Berlin""#, r#""city":"Zürich""#),
        (r#""city":"Berlin""#, "\"city\":\"Ber\tlin\""),
        (r#""status":"completed""#, r#""status":tru"#),
        (r#""status":"completed""#, r#""status":nul"#),
        (
            r#""transaction_id":"t1","#,
            r#""transaction_id":"t1","extra":true,"more":null,"n":-1.5e3,"#,
        ),
        (
            r#""location":{"country":"DE","city":"Berlin"}"#,
            r#""location":{}"#,
        ),
        (
            r#""location":{"country":"DE","city":"Berlin"}"#,
            r#""location":{"country":"DE","zip":"10115","city":"Berlin"}"#,
        ),
        (
            r#""compliance_flags":["HIGH_RISK"]"#,
            r#""compliance_flags":[ ]"#,
        ),
        (
            r#""compliance_flags":["HIGH_RISK"]"#,
            r#""compliance_flags":["A",]"#,
        ),
        (
            r#""created_at":"2026-01-01T10:00:00Z"}"#,
            r#""created_at":"2026-01-01T10:00:00Z",}"#,
        ),
        (
            r#""created_at":"2026-01-01T10:00:00Z"}"#,
            r#""created_at":"2026-01-01T10:00:00Z""#,
        ),
        (r#"{"transaction_id""#, r#"[{"transaction_id""#),
        (
            r#""transaction_id":"t1","#,
            r#""extra":{"nested":[1,2,{"a":null}]},"transaction_id":"t1","#,
        ),
    ] {
        assert!(GOOD.contains(from), "{from}");
        // Both the float fee of GOOD and a fee as a string.
        let string_fee = GOOD.replace(r#""fee_amount":1.5"#, r#""fee_amount":"1.5""#);
        lines.push(GOOD.replace(from, to).into_bytes());
        lines.push(string_fee.replace(from, to).into_bytes());
    }
    let mut planted = 0;
    for line in &lines {
        let (mut fast, mut general) = (Interner::default(), Interner::default());
        let one = d
            .decode(line, &mut fast)
            .map(|t| t.to_json(&fast, &[]))
            .map_err(|r| (r.code, r.detail));
        let text = std::str::from_utf8(line);
        let other = match text {
            Err(_) => continue,
            Ok(text) => json::Object::parse(text)
                .and_then(|o| d.build(&o, &mut general))
                .map(|t| t.to_json(&general, &[]))
                .map_err(|r| (r.code, r.detail)),
        };
        assert_eq!(one, other, "{}", String::from_utf8_lossy(line));
        planted += usize::from(one.is_err());
    }
    assert!(planted > 1_000, "the dirty records are in the sample");
}

/// The flat reader reads the usual records itself (it is not leaving them
/// all to the general reader) and leaves the forms it does not read.
#[test]
fn the_flat_reader_reads_the_usual_records() {
    let spaced = GOOD.replace(',', " ,\n ").replace(':', " : ");
    for line in [GOOD, spaced.as_str()] {
        let flat = json::Flat::parse(line).expect("read by the flat reader");
        let mapping = FieldMapping::new(&Default::default()).unwrap();
        let text = |f| {
            mapping
                .optional_text(&flat, f)
                .unwrap()
                .map(|s| s.to_string())
        };
        assert_eq!(text(Field::Customer).as_deref(), Some("c1"));
        assert_eq!(text(Field::City).as_deref(), Some("Berlin"));
        assert_eq!(text(Field::Fee).as_deref(), Some("1.5"));
        let flags = mapping.get(&flat, Field::Flags).unwrap().string_list();
        assert_eq!(flags.unwrap(), vec!["HIGH_RISK"]);
    }
    let config = crate::config::GeneratorConfig {
        dirty: 0.0,
        ..Default::default()
    };
    let mut g = crate::gen::Generator::new(&config);
    let read = (0..1_000)
        .map(|_| g.next_record().bytes)
        .filter(|r| json::Flat::parse(std::str::from_utf8(r).unwrap()).is_some())
        .count();
    assert_eq!(read, 1_000);
    for (from, to) in [
        (r#""customer_id":"c1""#, r#""customer_id":"c\u0031""#),
        (r#""customer_id":"c1""#, r#""customer_id":17"#),
        (r#""amount":"123.45""#, r#""amount":0123"#),
        (r#""city":"Berlin""#, r#""city":"Berlin","zip":{"a":[1]}"#),
        (
            r#""status":"completed""#,
            r#""status":"completed","status":"x""#,
        ),
    ] {
        assert!(json::Flat::parse(&GOOD.replace(from, to)).is_none(), "{to}");
    }
}

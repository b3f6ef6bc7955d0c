import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalDateTime;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;

import org.apache.flink.api.common.RuntimeExecutionMode;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.serialization.SimpleStringEncoder;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.file.sink.FileSink;
import org.apache.flink.streaming.api.functions.sink.filesystem.bucketassigners.BasePathBucketAssigner;
import org.apache.flink.connector.file.src.FileSource;
import org.apache.flink.connector.file.src.reader.TextLineInputFormat;
import org.apache.flink.core.fs.Path;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.DeserializationFeature;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.table.api.Schema;
import org.apache.flink.table.api.Table;
import org.apache.flink.table.api.bridge.java.StreamTableEnvironment;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * The comparison workload in Apache Flink: a DataStream job reads the
 * generated JSON lines file, validates each record (dead letters to a side
 * output with a reason), drops repeated transaction ids with keyed state,
 * runs the per-customer fraud and anomaly rules in a KeyedProcessFunction
 * whose state is Flink's keyed state, and hands the valid events to Flink
 * SQL as a table with an event-time attribute (watermarks five seconds
 * behind, as edge's default), where the three window tables are event-time
 * TUMBLE windows. Streaming mode, so that each key sees its events in file
 * order, as edge does.
 *
 * <pre>java -cp "FLINK_LIB/*:CLASSES" Pipelines INPUT OUTPUT_DIR PARALLELISM</pre>
 */
public class Pipelines {
    static final Set<String> KINDS = Set.of(
        "PURCHASE", "TRANSFER", "WIRE_TRANSFER", "WITHDRAWAL", "DEPOSIT", "PAYMENT", "REFUND", "OTHER");
    static final Set<String> STATUSES = Set.of("PENDING", "COMPLETED", "FAILED", "REVERSED");
    static final int MAX_RECORD_BYTES = 64 * 1024;
    static final BigDecimal MAX_AMOUNT = new BigDecimal(1_000_000_000);
    static final long MIN_EVENT_TIME = 946_684_800_000L;
    static final long MAX_FUTURE_MS = 300_000L;
    static final long MINUTE = 60_000L;
    static final BigDecimal[] BANDS = {
        new BigDecimal(10), new BigDecimal(50), new BigDecimal(100), new BigDecimal(500),
        new BigDecimal(1000), new BigDecimal(5000)};
    static final String[] BAND_LABELS = {"<10", "10-50", "50-100", "100-500", "500-1000", "1000-5000", ">=5000"};
    static final long HOUR = 3_600_000L;
    // Numbers are read as BigDecimal: money stays exact.
    static final ObjectMapper JSON = new ObjectMapper()
        .enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS);
    static final OutputTag<String> DEAD = new OutputTag<>("dead-letter", Types.STRING);

    /** A valid event, as the rules and the windows need it. */
    public static class Event {
        public long line;
        public String id;
        public String customer;
        public String merchant;
        public String country;
        public String device;
        public BigDecimal amount;
        public long time;
        public String city;
        public String channel;
        /** Occurrences of the compliance flags the compliance table counts. */
        public int highValue;
        public int highRisk;
        public int structuring;
        public int sanctions;
        /** 1 if the event carries any compliance flag. */
        public int flagged;
        /** LOW, MEDIUM, HIGH, CRITICAL or UNKNOWN: the record's risk_level, else from the risk score (0 to 100). */
        public String level;
        /** The amount band of the merchant table (0: under 10 ... 6: 5000 and over). */
        public int band;

        public Event() {}
    }

    static String text(JsonNode n, String field) {
        JsonNode v = n.get(field);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isValueNode()) {
            throw new IllegalArgumentException("wrong_type");
        }
        String s = v.isTextual() ? v.textValue() : v.asText();
        return s.trim().isEmpty() ? null : s;
    }

    static BigDecimal money(JsonNode n, String field) {
        JsonNode v = n.get(field);
        if (v == null || v.isNull()) {
            return null;
        }
        BigDecimal d;
        if (v.isNumber()) {
            d = v.decimalValue();
        } else if (v.isTextual() && !v.textValue().trim().isEmpty() && v.textValue().trim().length() <= 64) {
            try {
                d = new BigDecimal(v.textValue().trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("invalid_amount");
            }
        } else {
            throw new IllegalArgumentException("invalid_amount");
        }
        if (d.signum() < 0) {
            throw new IllegalArgumentException("negative_amount");
        }
        if (d.compareTo(MAX_AMOUNT) > 0 || d.stripTrailingZeros().scale() > 8) {
            throw new IllegalArgumentException("absurd_amount");
        }
        return d;
    }

    static long time(JsonNode n) {
        JsonNode v = n.get("created_at");
        if (v == null || v.isNull()) {
            throw new IllegalArgumentException("missing_field");
        }
        long ms;
        String t = v.asText().trim();
        if (v.isIntegralNumber() || (!t.isEmpty() && t.chars().allMatch(Character::isDigit))) {
            ms = Long.parseLong(t);
        } else {
            try {
                ms = OffsetDateTime.parse(t).toInstant().toEpochMilli();
            } catch (DateTimeParseException e) {
                try {
                    ms = LocalDateTime.parse(t).toInstant(ZoneOffset.UTC).toEpochMilli();
                } catch (DateTimeParseException e2) {
                    throw new IllegalArgumentException("invalid_time");
                }
            }
        }
        if (ms < MIN_EVENT_TIME || ms > System.currentTimeMillis() + MAX_FUTURE_MS) {
            throw new IllegalArgumentException("time_out_of_range");
        }
        return ms;
    }

    static String norm(String s) {
        return s.trim().toUpperCase(Locale.ROOT).replace('-', '_').replace(' ', '_');
    }

    /** Validates a record: an event, or a dead letter with its reason. */
    static class Validate extends ProcessFunction<String, Event> {
        long line;

        @Override
        public void processElement(String raw, Context ctx, Collector<Event> out) throws Exception {
            line++;
            try {
                if (raw.getBytes(StandardCharsets.UTF_8).length > MAX_RECORD_BYTES) {
                    throw new IllegalArgumentException("oversized");
                }
                // Lines are decoded as UTF-8 with U+FFFD for bytes that are not.
                if (raw.indexOf('\uFFFD') >= 0) {
                    throw new IllegalArgumentException("invalid_utf8");
                }
                JsonNode n;
                try {
                    n = JSON.readTree(raw);
                } catch (Exception e) {
                    throw new IllegalArgumentException("malformed_json");
                }
                if (n == null || !n.isObject()) {
                    throw new IllegalArgumentException("malformed_json");
                }
                Event e = new Event();
                e.line = line;
                e.id = text(n, "transaction_id");
                e.customer = text(n, "customer_id");
                if (e.id == null || e.customer == null) {
                    throw new IllegalArgumentException("missing_field");
                }
                if (e.id.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > 256) {
                    throw new IllegalArgumentException("field_too_long");
                }
                String kind = text(n, "transaction_type");
                if (kind == null) {
                    throw new IllegalArgumentException("missing_field");
                }
                if (!KINDS.contains(norm(kind))) {
                    throw new IllegalArgumentException("unknown_kind");
                }
                String status = text(n, "status");
                if (status != null && !STATUSES.contains(norm(status))) {
                    throw new IllegalArgumentException("unknown_status");
                }
                e.amount = money(n, "amount");
                if (e.amount == null) {
                    throw new IllegalArgumentException("missing_field");
                }
                money(n, "fee_amount");
                e.time = time(n);
                JsonNode risk = n.get("risk_score");
                e.level = "UNKNOWN";
                if (risk != null && !risk.isNull()) {
                    double r;
                    try {
                        r = Double.parseDouble(risk.asText().trim());
                    } catch (NumberFormatException x) {
                        throw new IllegalArgumentException("invalid_risk_score");
                    }
                    if (!(r >= 0 && r <= 100)) {
                        throw new IllegalArgumentException("invalid_risk_score");
                    }
                    e.level = r > 80 ? "CRITICAL" : r > 60 ? "HIGH" : r > 30 ? "MEDIUM" : "LOW";
                }
                String level = text(n, "risk_level");
                if (level != null && !level.isBlank()) {
                    e.level = switch (level.trim().toUpperCase()) {
                        case "LOW", "MEDIUM", "HIGH", "CRITICAL" -> level.trim().toUpperCase();
                        default -> throw new IllegalArgumentException("invalid_risk_level");
                    };
                }
                JsonNode flags = n.get("compliance_flags");
                if (flags != null && !flags.isNull()) {
                    if (!flags.isArray()) {
                        throw new IllegalArgumentException("wrong_type");
                    }
                    for (JsonNode f : flags) {
                        if (!f.isTextual()) {
                            throw new IllegalArgumentException("wrong_type");
                        }
                        e.flagged = 1;
                        switch (f.textValue()) {
                            case "HIGH_VALUE" -> e.highValue++;
                            case "HIGH_RISK" -> e.highRisk++;
                            case "STRUCTURING_SUSPECTED" -> e.structuring++;
                            case "SANCTIONS_CHECK_REQUIRED" -> e.sanctions++;
                            default -> { }
                        }
                    }
                }
                e.band = BANDS.length;
                for (int b = 0; b < BANDS.length; b++) {
                    if (e.amount.compareTo(BANDS[b]) < 0) {
                        e.band = b;
                        break;
                    }
                }
                e.id = e.id.trim();
                e.customer = e.customer.trim();
                String merchant = text(n, "merchant_id");
                e.merchant = merchant == null ? null : merchant.trim();
                String device = text(n, "device_fingerprint");
                e.device = device == null ? null : device.trim();
                JsonNode location = n.get("location");
                String country = location != null && location.isObject() ? text(location, "country") : null;
                e.country = country == null ? null : country.trim();
                String city = location != null && location.isObject() ? text(location, "city") : null;
                e.city = city == null ? null : city.trim();
                String channel = text(n, "channel");
                e.channel = channel == null ? null : channel.trim();
                out.collect(e);
            } catch (IllegalArgumentException reason) {
                ObjectNode dead = JSON.createObjectNode();
                dead.put("reason", reason.getMessage());
                dead.put("raw", raw);
                ctx.output(DEAD, JSON.writeValueAsString(dead));
            }
        }
    }

    /** Keeps the first event of each transaction id; later ones are dead letters. */
    /**
     * Drops repeated transaction ids. Keyed by customer (a transaction's
     * repeats share its customer), so that each customer's events keep
     * their file order at any parallelism.
     */
    static class Dedup extends KeyedProcessFunction<String, Event, Event> {
        transient MapState<String, Boolean> seen;

        @Override
        public void open(org.apache.flink.api.common.functions.OpenContext ctx) {
            seen = getRuntimeContext().getMapState(
                new MapStateDescriptor<>("seen", Types.STRING, Types.BOOLEAN));
        }

        @Override
        public void processElement(Event e, Context ctx, Collector<Event> out) throws Exception {
            if (seen.contains(e.id)) {
                ObjectNode dead = JSON.createObjectNode();
                dead.put("reason", "duplicate");
                dead.put("id", e.id);
                ctx.output(DEAD, JSON.writeValueAsString(dead));
                return;
            }
            seen.put(e.id, true);
            out.collect(e);
        }
    }

    /** The fraud rule set's state of one customer. */
    public static class FraudState {
        public int count;
        public BigDecimal maxAmount = BigDecimal.ZERO;
        public List<Long> recent = new ArrayList<>();
        public List<Long> small = new ArrayList<>();
        public long hourStart;
        public int hourCount;
        public int activeHours;
        public int pastHoursTotal;
        public List<String> countries = new ArrayList<>();
        public int[] hours = new int[24];

        public FraudState() {}
    }

    /** The anomaly rule set's state of one customer. */
    public static class AnomalyState {
        public long n;
        public double mean;
        public double m2;
        public List<String> devices = new ArrayList<>();
        public List<Long> recentTimes = new ArrayList<>();
        public List<BigDecimal> recentAmounts = new ArrayList<>();
        public long lastVelocityAlert;
        public long firstSeen;

        public AnomalyState() {}
    }

    static final BigDecimal FOUR = new BigDecimal(4);
    static final BigDecimal EIGHT = new BigDecimal(8);
    static final BigDecimal SMALL = new BigDecimal("5.00");

    /** The fraud and anomaly rule sets, per customer, with keyed state. */
    static class Rules extends KeyedProcessFunction<String, Event, String> {
        transient ValueState<FraudState> fraud;
        transient ValueState<AnomalyState> anomaly;

        @Override
        public void open(org.apache.flink.api.common.functions.OpenContext ctx) {
            fraud = getRuntimeContext().getState(new ValueStateDescriptor<>("fraud", FraudState.class));
            anomaly = getRuntimeContext().getState(new ValueStateDescriptor<>("anomaly", AnomalyState.class));
        }

        static String alert(String kind, Event e) throws Exception {
            ObjectNode a = JSON.createObjectNode();
            a.put("kind", kind);
            a.put("transaction_id", e.id);
            a.put("customer_id", e.customer);
            a.put("event_time", e.time);
            return JSON.writeValueAsString(a);
        }

        @Override
        public void processElement(Event e, Context ctx, Collector<String> out) throws Exception {
            FraudState c = fraud.value();
            if (c == null) {
                c = new FraudState();
            }
            long t = e.time;
            BigDecimal amount = e.amount;
            BigDecimal factor = c.count < 5 ? EIGHT : FOUR;
            if (c.count >= 2 && amount.compareTo(c.maxAmount.multiply(factor)) > 0) {
                out.collect(alert("HIGH_AMOUNT", e));
            }
            c.recent.removeIf(r -> t - r >= MINUTE);
            c.recent.add(t);
            double perMinute = c.activeHours == 0 ? 0.0 : (double) c.pastHoursTotal / c.activeHours / 60.0;
            int rapid = Math.max(5, (int) Math.ceil(5.0 * perMinute));
            if (c.recent.size() == rapid + 1) {
                out.collect(alert("RAPID_ORDERS", e));
            }
            if (c.recent.size() > 16) {
                c.recent.remove(0);
            }
            if (amount.compareTo(SMALL) < 0) {
                c.small.removeIf(r -> t - r >= 10 * MINUTE);
                c.small.add(t);
                if (c.small.size() == 3) {
                    out.collect(alert("CARD_TESTING", e));
                }
                if (c.small.size() > 16) {
                    c.small.remove(0);
                }
            }
            long hourStart = t - Math.floorMod(t, HOUR);
            if (hourStart != c.hourStart) {
                if (c.hourCount > 0) {
                    c.activeHours++;
                    c.pastHoursTotal += c.hourCount;
                }
                c.hourStart = hourStart;
                c.hourCount = 0;
            }
            c.hourCount++;
            if (c.activeHours >= 3) {
                double average = (double) c.pastHoursTotal / c.activeHours;
                long limit = (long) Math.ceil(Math.max(average * 3.0, 10.0));
                if (c.hourCount == limit + 1) {
                    out.collect(alert("FREQUENCY_ANOMALY", e));
                }
            }
            if (e.country != null && !c.countries.contains(e.country)) {
                if (c.count >= 1) {
                    out.collect(alert("LOCATION_ANOMALY", e));
                }
                if (c.countries.size() < 8) {
                    c.countries.add(e.country);
                }
            }
            int hour = (int) (Math.floorMod(t, 86_400_000L) / HOUR);
            boolean unused = true;
            for (int d = 0; d < 3; d++) {
                unused &= c.hours[(hour + d) % 24] == 0 && c.hours[(hour + 24 - d) % 24] == 0;
            }
            if (c.count >= 30 && unused) {
                out.collect(alert("TIME_ANOMALY", e));
            }
            c.hours[hour]++;
            c.count++;
            if (amount.compareTo(c.maxAmount) > 0) {
                c.maxAmount = amount;
            }
            fraud.update(c);

            AnomalyState s = anomaly.value();
            if (s == null) {
                s = new AnomalyState();
            }
            // Scores, not money: the running statistics are doubles.
            double x = amount.doubleValue();
            if (s.n >= 20) {
                double sd = Math.sqrt(s.m2 / (s.n - 1));
                if (sd > 0 && (x - s.mean) / sd > 4.0) {
                    out.collect(alert("STATISTICAL_OUTLIER", e));
                }
            }
            if (e.device != null && !s.devices.contains(e.device)) {
                if (s.n >= 10) {
                    out.collect(alert("PATTERN_DEVIATION", e));
                }
                if (s.devices.size() >= 4) {
                    s.devices.remove(0);
                }
                s.devices.add(e.device);
            }
            for (int i = s.recentTimes.size() - 1; i >= 0; i--) {
                if (t - s.recentTimes.get(i) >= 10 * MINUTE) {
                    s.recentTimes.remove(i);
                    s.recentAmounts.remove(i);
                }
            }
            s.recentTimes.add(t);
            s.recentAmounts.add(amount);
            if (s.recentTimes.size() > 32) {
                s.recentTimes.remove(0);
                s.recentAmounts.remove(0);
            }
            if (s.n >= 5 && s.recentTimes.size() >= 4 && t - s.lastVelocityAlert >= 10 * MINUTE) {
                BigDecimal spend = BigDecimal.ZERO;
                for (BigDecimal a : s.recentAmounts) {
                    spend = spend.add(a);
                }
                double usual = 1.0;
                if (s.firstSeen != 0) {
                    double span = (double) Math.max(t - s.firstSeen, 10 * MINUTE);
                    usual = Math.max((double) s.n * (10 * MINUTE) / span, 1.0);
                }
                if (spend.doubleValue() > s.mean * usual * 20.0) {
                    s.lastVelocityAlert = t;
                    out.collect(alert("VELOCITY_ANOMALY", e));
                }
            }
            if (s.n == 0) {
                s.firstSeen = t;
            }
            s.n++;
            double delta = x - s.mean;
            s.mean += delta / s.n;
            s.m2 += delta * (x - s.mean);
            anomaly.update(s);
        }
    }

    /** The lifecycle rule set's state of one customer, across its windows. */
    public static class LifeState {
        public long transactions;
        public BigDecimal spend = BigDecimal.ZERO;
        public int activeWindows;
        public long lastWindowEnd;
        public long lastWindowCount;

        public LifeState() {}
    }

    static final java.time.format.DateTimeFormatter ISO =
        java.time.format.DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);

    static double share(java.util.Map<String, Long> counts, long total) {
        long top = counts.values().stream().mapToLong(Long::longValue).max().orElse(0);
        return total == 0 ? 1.0 : Math.round((double) top / total * 10_000.0) / 10_000.0;
    }

    /**
     * customer_lifecycle: 15-minute event-time windows per customer, whose
     * per-key state carries the lifetime totals and the stage from one of a
     * customer's windows to the next (windows fire in event-time order).
     */
    static class Lifecycle extends ProcessWindowFunction<Event, String, String, TimeWindow> {
        static final ValueStateDescriptor<LifeState> LIFE = new ValueStateDescriptor<>("life", LifeState.class);
        static final long DAY = 86_400_000L;

        @Override
        public void process(String customer, Context ctx, Iterable<Event> events, Collector<String> out)
                throws Exception {
            long count = 0;
            BigDecimal spend = BigDecimal.ZERO;
            BigDecimal merchantSpend = null;
            java.util.Map<String, Long> channels = new java.util.TreeMap<>();
            java.util.Map<String, Long> cities = new java.util.HashMap<>();
            java.util.Map<String, Long> devices = new java.util.HashMap<>();
            for (Event e : events) {
                count++;
                spend = spend.add(e.amount);
                if (e.merchant != null) {
                    // No merchant dimension is loaded: every category is unknown.
                    merchantSpend = merchantSpend == null ? e.amount : merchantSpend.add(e.amount);
                }
                if (e.channel != null) {
                    channels.merge(e.channel, 1L, Long::sum);
                }
                if (e.city != null) {
                    cities.merge(e.city, 1L, Long::sum);
                }
                if (e.device != null) {
                    devices.merge(e.device, 1L, Long::sum);
                }
            }
            long start = ctx.window().getStart();
            long end = ctx.window().getEnd();
            ValueState<LifeState> state = ctx.globalState().getState(LIFE);
            LifeState life = state.value() == null ? new LifeState() : state.value();
            long previousCount = life.lastWindowCount;
            boolean reactivated = life.lastWindowEnd > 0 && start - life.lastWindowEnd > 7 * DAY;
            life.transactions += count;
            life.spend = life.spend.add(spend);
            life.activeWindows++;
            String stage = reactivated ? "REACTIVATED"
                : life.transactions <= 5 ? "NEW"
                : previousCount >= 4 && count * 3 < previousCount ? "AT_RISK"
                : life.activeWindows >= 8 ? "LOYAL"
                : "ACTIVE";
            life.lastWindowEnd = end;
            life.lastWindowCount = count;
            state.update(life);

            ObjectNode row = JSON.createObjectNode();
            row.put("customer_id", customer);
            row.put("window_start", ISO.format(Instant.ofEpochMilli(start)));
            row.put("window_end", ISO.format(Instant.ofEpochMilli(end)));
            row.put("tier", "UNKNOWN");
            row.put("segment", "UNKNOWN");
            row.put("transaction_count", count);
            row.put("total_spend", spend.toPlainString());
            ObjectNode usage = row.putObject("channel_usage");
            channels.forEach(usage::put);
            ObjectNode categories = row.putObject("spending_by_category");
            if (merchantSpend != null) {
                categories.put("unknown", merchantSpend.toPlainString());
            }
            row.put("location_consistency", share(cities, count));
            row.put("device_consistency", share(devices, count));
            row.put("lifecycle_stage", stage);
            row.put("lifetime_transactions", life.transactions);
            row.put("lifetime_spend", life.spend.toPlainString());
            out.collect(JSON.writeValueAsString(row));
        }
    }

    static FileSink<String> lines(String dir) {
        return FileSink.forRowFormat(new Path(dir), new SimpleStringEncoder<String>("UTF-8"))
            .withBucketAssigner(new BasePathBucketAssigner<>())
            .build();
    }

    static final String START = "DATE_FORMAT(window_start, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z''')";
    static final String END = "DATE_FORMAT(window_end, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z''')";

    static void sink(StreamTableEnvironment tables, String out, String name, String columns) {
        tables.executeSql("CREATE TEMPORARY TABLE " + name + " (" + columns + ") WITH ('connector' = "
            + "'filesystem', 'path' = '" + out + "/" + name + "', 'format' = 'json')");
    }

    static String tumble(String table, String time, int minutes) {
        return "TABLE(TUMBLE(TABLE " + table + ", DESCRIPTOR(" + time + "), INTERVAL '" + minutes + "' MINUTES))";
    }

    static void windows(StreamTableEnvironment tables, String out,
            org.apache.flink.table.api.StatementSet set) {
        // merchant_metrics, 10 minutes per merchant: a window per merchant and
        // customer first (repeat customers), then per merchant, cascaded.
        StringBuilder bands = new StringBuilder();
        StringBuilder bandJson = new StringBuilder("JSON_OBJECT(");
        for (int b = 0; b < BAND_LABELS.length; b++) {
            bands.append(", SUM(CASE WHEN band = ").append(b).append(" THEN 1 ELSE 0 END) AS b").append(b);
            bandJson.append(b == 0 ? "" : ", ").append("'").append(BAND_LABELS[b]).append("' VALUE SUM(b")
                .append(b).append(")");
        }
        bandJson.append(")");
        tables.executeSql("CREATE TEMPORARY VIEW merchant_customers AS SELECT merchant_id, customer_id, "
            + "window_time, COUNT(*) AS n, SUM(amount) AS spend, MIN(amount) AS low, "
            + "MAX(amount) AS high" + bands + " FROM " + tumble("events", "rowtime", 10)
            + " WHERE merchant_id IS NOT NULL GROUP BY merchant_id, customer_id, window_start, window_end, window_time");
        // Per-city counts: a window per merchant and city, then per merchant,
        // joined to the merchant windows by a window join.
        tables.executeSql("CREATE TEMPORARY VIEW merchant_city_counts AS SELECT merchant_id, city, window_time, "
            + "COUNT(*) AS n FROM " + tumble("events", "rowtime", 10) + " WHERE merchant_id IS NOT NULL "
            + "AND city IS NOT NULL GROUP BY merchant_id, city, window_start, window_end, window_time");
        sink(tables, out, "merchant_metrics", "merchant_id STRING, window_start STRING, window_end STRING, "
            + "revenue STRING, transaction_count BIGINT, average_value STRING, min_amount STRING, max_amount STRING, "
            + "unique_customers BIGINT, repeat_customers INT, retention DOUBLE, amount_ranges STRING, "
            + "locations STRING");
        set.addInsertSql("INSERT INTO merchant_metrics SELECT m.merchant_id, "
            + START.replace("window_start", "m.window_start") + ", " + END.replace("window_end", "m.window_end")
            + ", revenue, transaction_count, average_value, min_amount, max_amount, unique_customers, "
            + "repeat_customers, retention, amount_ranges, COALESCE(c.locations, '{}') FROM ("
            + "SELECT merchant_id, window_start, window_end, "
            + "CAST(SUM(spend) AS STRING) AS revenue, SUM(n) AS transaction_count, "
            + "CAST(ROUND(SUM(spend) / SUM(n), 2) AS STRING) AS average_value, "
            + "CAST(MIN(low) AS STRING) AS min_amount, CAST(MAX(high) AS STRING) AS max_amount, "
            + "COUNT(*) AS unique_customers, SUM(CASE WHEN n > 1 THEN 1 ELSE 0 END) AS repeat_customers, "
            + "ROUND(CAST(SUM(CASE WHEN n > 1 THEN 1 ELSE 0 END) AS DOUBLE) / COUNT(*) * 10000.0, 0) / 10000.0 "
            + "AS retention, " + bandJson + " AS amount_ranges FROM " + tumble("merchant_customers", "window_time", 10)
            + " GROUP BY merchant_id, window_start, window_end) m LEFT JOIN ("
            + "SELECT merchant_id, window_start, window_end, JSON_OBJECTAGG(KEY city VALUE n) AS locations FROM "
            + tumble("merchant_city_counts", "window_time", 10) + " GROUP BY merchant_id, window_start, window_end) c "
            + "ON m.merchant_id = c.merchant_id AND m.window_start = c.window_start AND m.window_end = c.window_end");

        // compliance_metrics, 30 minutes per customer.
        String score = "ROUND((1.0 - CAST(SUM(flagged) AS DOUBLE) / COUNT(*)) * 10000.0, 0) / 10000.0";
        sink(tables, out, "compliance_metrics", "customer_id STRING, window_start STRING, window_end STRING, "
            + "transaction_count BIGINT, total_amount STRING, high_value_count INT, high_risk_count INT, "
            + "structuring_count INT, sanctions_count INT, flagged_count INT, flagged_transaction_ids ARRAY<STRING>, "
            + "violation_amount STRING, risk_distribution STRING, compliance_score DOUBLE, requires_review BOOLEAN");
        set.addInsertSql("INSERT INTO compliance_metrics SELECT customer_id, " + START + ", " + END + ", "
            + "COUNT(*), CAST(SUM(amount) AS STRING), SUM(high_value), SUM(high_risk), SUM(structuring), "
            + "SUM(sanctions), SUM(flagged), ARRAY_AGG(transaction_id) FILTER (WHERE flagged = 1), "
            + "CAST(COALESCE(SUM(amount) FILTER (WHERE flagged = 1), 0) AS STRING), "
            + "JSON_OBJECT('LOW' VALUE SUM(CASE WHEN level = 'LOW' THEN 1 ELSE 0 END), "
            + "'MEDIUM' VALUE SUM(CASE WHEN level = 'MEDIUM' THEN 1 ELSE 0 END), "
            + "'HIGH' VALUE SUM(CASE WHEN level = 'HIGH' THEN 1 ELSE 0 END), "
            + "'CRITICAL' VALUE SUM(CASE WHEN level = 'CRITICAL' THEN 1 ELSE 0 END), "
            + "'UNKNOWN' VALUE SUM(CASE WHEN level = 'UNKNOWN' THEN 1 ELSE 0 END)), "
            + score + ", " + score + " < 0.7 OR SUM(sanctions) > 0 FROM " + tumble("events", "rowtime", 30)
            + " GROUP BY customer_id, window_start, window_end");

    }

    public static void main(String[] args) throws Exception {
        String input = args[0];
        String out = args[1];
        int parallelism = Integer.parseInt(args[2]);
        Configuration conf = new Configuration();
        conf.setString("table.local-time-zone", "UTC");
        conf.setString("execution.checkpointing.storage", "filesystem");
        conf.setString("execution.checkpointing.dir", new java.io.File(out, ".checkpoints").toURI().toString());
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setRuntimeMode(RuntimeExecutionMode.STREAMING);
        env.setParallelism(parallelism);
        // The file sinks commit what they wrote on checkpoints (exactly once);
        // the last one is taken when the input ends.
        env.enableCheckpointing(2_000);
        StreamTableEnvironment tables = StreamTableEnvironment.create(env);
        tables.getConfig().set("table.local-time-zone", "UTC");

        DataStream<String> raw = env.fromSource(
            FileSource.forRecordStreamFormat(new TextLineInputFormat(), new Path(input)).build(),
            WatermarkStrategy.noWatermarks(), "events");
        SingleOutputStreamOperator<Event> checked = raw.process(new Validate()).setParallelism(1);
        SingleOutputStreamOperator<Event> events = checked.keyBy(e -> e.customer).process(new Dedup());
        checked.getSideOutput(DEAD).union(events.getSideOutput(DEAD)).sinkTo(lines(out + "/dead_letter"));
        events.keyBy(e -> e.customer).process(new Rules()).sinkTo(lines(out + "/alerts"));

        DataStream<Event> timed = events
            .assignTimestampsAndWatermarks(WatermarkStrategy.<Event>forBoundedOutOfOrderness(Duration.ofSeconds(5))
                .withTimestampAssigner((e, ts) -> e.time));
        timed.keyBy(e -> e.customer)
            .window(TumblingEventTimeWindows.of(Duration.ofMinutes(15)))
            .process(new Lifecycle())
            .sinkTo(lines(out + "/customer_lifecycle"));
        DataStream<Row> rows = timed
            .map(e -> Row.of(e.customer, e.merchant, e.id, e.amount, e.city, e.highValue, e.highRisk,
                e.structuring, e.sanctions, e.flagged, e.level, e.band, Instant.ofEpochMilli(e.time)))
            .returns(Types.ROW_NAMED(new String[] {"customer_id", "merchant_id", "transaction_id", "amount", "city",
                    "high_value", "high_risk", "structuring", "sanctions", "flagged", "level", "band", "ts"},
                Types.STRING, Types.STRING, Types.STRING, Types.BIG_DEC, Types.STRING, Types.INT, Types.INT,
                Types.INT, Types.INT, Types.INT, Types.STRING, Types.INT, Types.INSTANT));
        Table table = tables.fromDataStream(rows, Schema.newBuilder()
            .column("customer_id", "STRING")
            .column("merchant_id", "STRING")
            .column("transaction_id", "STRING")
            .column("amount", "DECIMAL(38, 8)")
            .column("city", "STRING")
            .column("high_value", "INT")
            .column("high_risk", "INT")
            .column("structuring", "INT")
            .column("sanctions", "INT")
            .column("flagged", "INT")
            .column("level", "STRING")
            .column("band", "INT")
            .column("ts", "TIMESTAMP_LTZ(3)")
            .columnByMetadata("rowtime", "TIMESTAMP_LTZ(3)")
            .watermark("rowtime", "SOURCE_WATERMARK()")
            .build());
        tables.createTemporaryView("events", table);
        var set = tables.createStatementSet();
        windows(tables, out, set);
        set.attachAsDataStream();
        long started = System.currentTimeMillis();
        env.execute("edge-comparison");
        System.err.printf("flink: done in %.2f s%n", (System.currentTimeMillis() - started) / 1000.0);
    }
}

"""The comparison workload in Apache Spark (DataFrame API, local[N]).

Reads the generated JSON lines file, sends records that fail validation to a
dead-letter output with a reason, drops repeated transaction ids (the first
in file order is kept), runs the per-customer fraud and anomaly rules over
each customer's events in file order (a grouped pandas operator keeping the
rules' state), and writes the alerts and the three event-time window tables
of the comparison: merchant_metrics (10 minutes per merchant),
compliance_metrics (30 minutes per customer) and customer_lifecycle (15
minutes per customer). Money is DECIMAL throughout and written as text, as
edge writes it.

    python pipelines.py INPUT OUTPUT_DIR PARALLELISM
"""

import math
import sys
import time
from decimal import Decimal

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

KINDS = ["PURCHASE", "TRANSFER", "WIRE_TRANSFER", "WITHDRAWAL", "DEPOSIT", "PAYMENT", "REFUND", "OTHER"]
STATUSES = ["PENDING", "COMPLETED", "FAILED", "REVERSED"]
MAX_RECORD_BYTES = 64 * 1024
MAX_AMOUNT = 1_000_000_000
MIN_EVENT_TIME = "2000-01-01 00:00:00"
MAX_FUTURE_SECONDS = 300

LOCATION = T.StructType([T.StructField("country", T.StringType()), T.StructField("city", T.StringType())])
SCHEMA = T.StructType(
    [T.StructField(name, T.StringType()) for name in [
        "transaction_id", "customer_id", "account_id", "merchant_id", "transaction_type", "status",
        "amount", "fee_amount", "currency", "channel", "device_fingerprint"]]
    + [
        T.StructField("location", LOCATION),
        T.StructField("risk_score", T.StringType()),
        T.StructField("risk_level", T.StringType()),
        T.StructField("compliance_flags", T.ArrayType(T.StringType())),
        T.StructField("created_at", T.StringType()),
        T.StructField("_corrupt", T.StringType()),
    ]
)


MINUTE = 60_000
HOUR = 3_600_000
ALERTS = T.StructType(
    [
        T.StructField("kind", T.StringType()),
        T.StructField("transaction_id", T.StringType()),
        T.StructField("customer_id", T.StringType()),
        T.StructField("event_time", T.LongType()),
    ]
)


def fraud(rows, alert):
    """The fraud rule set of one customer, over its events in order."""
    count, max_amount = 0, Decimal(0)
    recent, small, countries, hours = [], [], [], [0] * 24
    hour_start = hour_count = active_hours = past_hours_total = 0
    for r in rows:
        t, amount = r.t, r.amount
        factor = 8 if count < 5 else 4
        if count >= 2 and amount > max_amount * factor:
            alert("HIGH_AMOUNT", r)
        recent = [x for x in recent if t - x < MINUTE] + [t]
        per_minute = past_hours_total / active_hours / 60.0 if active_hours else 0.0
        rapid = max(5, math.ceil(5.0 * per_minute))
        if len(recent) == rapid + 1:
            alert("RAPID_ORDERS", r)
        if len(recent) > 16:
            recent.pop(0)
        if amount < Decimal("5.00"):
            small = [x for x in small if t - x < 10 * MINUTE] + [t]
            if len(small) == 3:
                alert("CARD_TESTING", r)
            if len(small) > 16:
                small.pop(0)
        start = t - t % HOUR
        if start != hour_start:
            if hour_count > 0:
                active_hours += 1
                past_hours_total += hour_count
            hour_start, hour_count = start, 0
        hour_count += 1
        if active_hours >= 3:
            limit = math.ceil(max(past_hours_total / active_hours * 3.0, 10.0))
            if hour_count == limit + 1:
                alert("FREQUENCY_ANOMALY", r)
        if r.country is not None and r.country not in countries:
            if count >= 1:
                alert("LOCATION_ANOMALY", r)
            if len(countries) < 8:
                countries.append(r.country)
        hour = t % 86_400_000 // HOUR
        near = [(hour + d) % 24 for d in range(3)] + [(hour + 24 - d) % 24 for d in range(3)]
        if count >= 30 and all(hours[h] == 0 for h in near):
            alert("TIME_ANOMALY", r)
        hours[hour] += 1
        count += 1
        max_amount = max(max_amount, amount)


def anomaly(rows, alert):
    """The anomaly rule set of one customer: running mean and deviation
    (Welford, in floating point: scores, not money), devices, velocity."""
    n, mean, m2 = 0, 0.0, 0.0
    devices, recent, last_velocity_alert, first_seen = [], [], 0, 0
    for r in rows:
        t, amount = r.t, r.amount
        x = float(amount)
        if n >= 20:
            sd = math.sqrt(m2 / (n - 1))
            if sd > 0 and (x - mean) / sd > 4.0:
                alert("STATISTICAL_OUTLIER", r)
        if r.device is not None and r.device not in devices:
            if n >= 10:
                alert("PATTERN_DEVIATION", r)
            if len(devices) >= 4:
                devices.pop(0)
            devices.append(r.device)
        recent = [(u, a) for (u, a) in recent if t - u < 10 * MINUTE] + [(t, amount)]
        if len(recent) > 32:
            recent.pop(0)
        if n >= 5 and len(recent) >= 4 and t - last_velocity_alert >= 10 * MINUTE:
            usual = 1.0
            if first_seen != 0:
                span = float(max(t - first_seen, 10 * MINUTE))
                usual = max(n * float(10 * MINUTE) / span, 1.0)
            if float(sum(a for _, a in recent)) > mean * usual * 20.0:
                last_velocity_alert = t
                alert("VELOCITY_ANOMALY", r)
        if n == 0:
            first_seen = t
        n += 1
        delta = x - mean
        mean += delta / n
        m2 += delta * (x - mean)


def customer_rules(pdf):
    import pandas as pd

    pdf = pdf.sort_values("line")
    out = []

    def alert(kind, r):
        out.append((kind, r.transaction_id, r.customer_id, r.t))

    rows = list(pdf.itertuples(index=False))
    fraud(rows, alert)
    anomaly(rows, alert)
    return pd.DataFrame(out, columns=["kind", "transaction_id", "customer_id", "event_time"])


def blank(c):
    return c.isNull() | (F.trim(c) == "")


def normalized(c):
    return F.upper(F.regexp_replace(F.trim(c), "[- ]", "_"))


def money(c):
    return F.expr(f"try_cast(trim({c}) as decimal(38, 8))")


def main():
    source, out, parallelism = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spark = (
        SparkSession.builder.master(f"local[{parallelism}]")
        .appName("edge-comparison")
        .config("spark.sql.shuffle.partitions", str(parallelism))
        .config("spark.default.parallelism", str(parallelism))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    started = time.time()

    lines = spark.read.text(source).withColumn("line", F.monotonically_increasing_id())
    r = lines.withColumn(
        "r", F.from_json("value", SCHEMA, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"})
    )
    amount = money("r.amount")
    fee = money("r.fee_amount")
    created = F.col("r.created_at")
    event_time = F.when(
        F.trim(created).rlike("^[0-9]+$"), F.timestamp_millis(F.trim(created).cast("long"))
    ).otherwise(F.expr("try_to_timestamp(trim(r.created_at))"))
    risk = F.expr("try_cast(trim(r.risk_score) as double)")
    reason = (
        F.when(F.octet_length("value") > MAX_RECORD_BYTES, F.lit("oversized"))
        .when(~F.expr("is_valid_utf8(value)"), F.lit("invalid_utf8"))
        .when(F.col("r").isNull() | F.col("r._corrupt").isNotNull(), F.lit("malformed_json"))
        .when(blank(F.col("r.transaction_id")) | blank(F.col("r.customer_id")), F.lit("missing_field"))
        .when(F.octet_length(F.trim("r.transaction_id")) > 256, F.lit("field_too_long"))
        .when(~normalized(F.col("r.transaction_type")).isin(KINDS), F.lit("unknown_kind"))
        .when(
            ~blank(F.col("r.status")) & ~normalized(F.col("r.status")).isin(STATUSES),
            F.lit("unknown_status"),
        )
        .when(blank(F.col("r.amount")), F.lit("missing_field"))
        .when(amount.isNull() | (~blank(F.col("r.fee_amount")) & fee.isNull()), F.lit("invalid_amount"))
        .when((amount < 0) | (fee < 0), F.lit("negative_amount"))
        .when((amount > MAX_AMOUNT) | (fee > MAX_AMOUNT), F.lit("absurd_amount"))
        .when(blank(created), F.lit("missing_field"))
        .when(event_time.isNull(), F.lit("invalid_time"))
        .when(
            (event_time < F.lit(MIN_EVENT_TIME).cast("timestamp"))
            | (event_time > F.current_timestamp() + F.expr(f"INTERVAL {MAX_FUTURE_SECONDS} SECONDS")),
            F.lit("time_out_of_range"),
        )
        .when(
            ~blank(F.col("r.risk_score")) & (risk.isNull() | (risk < 0) | (risk > 100)),
            F.lit("invalid_risk_score"),
        )
        .when(
            ~blank(F.col("r.risk_level"))
            & ~F.upper(F.trim(F.col("r.risk_level"))).isin("LOW", "MEDIUM", "HIGH", "CRITICAL"),
            F.lit("invalid_risk_level"),
        )
    )
    checked = r.select(
        "value", "line", reason.alias("reason"),
        F.trim("r.transaction_id").alias("transaction_id"),
        F.trim("r.customer_id").alias("customer_id"),
        F.when(blank(F.col("r.merchant_id")), None).otherwise(F.trim("r.merchant_id")).alias("merchant_id"),
        F.when(blank(F.col("r.location.country")), None).otherwise(F.trim("r.location.country")).alias("country"),
        F.when(blank(F.col("r.device_fingerprint")), None)
        .otherwise(F.trim("r.device_fingerprint"))
        .alias("device"),
        F.when(blank(F.col("r.location.city")), None).otherwise(F.trim("r.location.city")).alias("city"),
        F.when(blank(F.col("r.channel")), None).otherwise(F.trim("r.channel")).alias("channel"),
        F.coalesce(F.col("r.compliance_flags"), F.array().cast("array<string>")).alias("flags"),
        risk.alias("risk_score"),
        F.col("r.risk_level").alias("risk_level"),
        amount.alias("amount"),
        event_time.alias("event_time"),
    ).cache()

    # A repeated transaction id is a dead letter too; the first in file
    # order is kept.
    first = Window.partitionBy("transaction_id").orderBy("line")
    numbered = checked.withColumn(
        "reason",
        F.when(
            F.col("reason").isNull() & (F.row_number().over(first) > 1), F.lit("duplicate")
        ).otherwise(F.col("reason")),
    ).cache()
    numbered.where(F.col("reason").isNotNull()).select("reason", F.col("value").alias("raw")).write.mode(
        "overwrite"
    ).json(f"{out}/dead_letter")
    events = numbered.where(F.col("reason").isNull()).drop("value", "reason").cache()

    alerts = (
        events.select(
            "line", "transaction_id", "customer_id", "amount", "country", "device",
            F.expr("unix_millis(event_time)").alias("t"),
        )
        .groupBy("customer_id")
        .applyInPandas(customer_rules, ALERTS)
    )
    alerts.write.mode("overwrite").json(f"{out}/alerts")

    fmt = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"

    def bounds():
        return [
            F.date_format("w.start", fmt).alias("window_start"),
            F.date_format("w.end", fmt).alias("window_end"),
        ]

    def counts_json(pairs):
        """A JSON object of the non-zero counts among (label, count column)."""
        entries = F.create_map(*[x for label, c in pairs for x in (F.lit(label), c)])
        return F.to_json(F.map_filter(entries, lambda k, v: v > 0))

    def counts_by(df, key, column, name):
        """Per window: a JSON object of the events per value of `column`."""
        return (
            df.where(F.col(column).isNotNull())
            .groupBy(key, "w", column)
            .count()
            .groupBy(key, "w")
            .agg(F.to_json(F.map_from_entries(F.collect_list(F.struct(column, "count")))).alias(name))
        )

    # merchant_metrics: per merchant, 10 minutes; repeat customers need the
    # count per customer first.
    bands = [("<10", 10), ("10-50", 50), ("50-100", 100), ("100-500", 500), ("500-1000", 1000),
             ("1000-5000", 5000), (">=5000", None)]
    band = F.lit(">=5000")
    for label, upper in reversed(bands[:-1]):
        band = F.when(F.col("amount") < upper, F.lit(label)).otherwise(band)
    m = events.where(F.col("merchant_id").isNotNull()).withColumn(
        "w", F.window("event_time", "10 minutes")
    ).withColumn("band", band)
    per_customer = m.groupBy("merchant_id", "w", "customer_id").agg(
        F.count(F.lit(1)).alias("n"),
        F.sum("amount").alias("spend"),
        F.min("amount").alias("low"),
        F.max("amount").alias("high"),
        *[F.sum(F.when(F.col("band") == label, 1).otherwise(0)).alias(f"b{i}") for i, (label, _) in enumerate(bands)],
    )
    cities = counts_by(m, "merchant_id", "city", "locations")
    merchant = (
        per_customer.groupBy("merchant_id", "w")
        .agg(
            F.sum("n").alias("transaction_count"),
            F.sum("spend").alias("revenue"),
            F.min("low").alias("min_amount"),
            F.max("high").alias("max_amount"),
            F.count(F.lit(1)).alias("unique_customers"),
            F.sum(F.when(F.col("n") > 1, 1).otherwise(0)).alias("repeat_customers"),
            *[F.sum(f"b{i}").alias(f"b{i}") for i in range(len(bands))],
        )
        .join(cities, ["merchant_id", "w"], "left")
        .select(
            "merchant_id",
            *bounds(),
            F.col("revenue").cast("string").alias("revenue"),
            "transaction_count",
            F.round(F.col("revenue") / F.col("transaction_count"), 2).cast("string").alias("average_value"),
            F.col("min_amount").cast("string").alias("min_amount"),
            F.col("max_amount").cast("string").alias("max_amount"),
            "unique_customers",
            "repeat_customers",
            (F.round(F.col("repeat_customers") / F.col("unique_customers") * 10_000.0) / 10_000.0).alias("retention"),
            F.to_json(F.create_map(*[x for i, (label, _) in enumerate(bands) for x in (F.lit(label), F.col(f"b{i}"))])).alias(
                "amount_ranges"
            ),
            F.coalesce("locations", F.lit("{}")).alias("locations"),
        )
    )

    # compliance_metrics: per customer, 30 minutes.
    def flag(name):
        return F.sum(F.size(F.filter("flags", lambda f: f == name)))

    flagged = F.size("flags") > 0
    levels = ["LOW", "MEDIUM", "HIGH", "CRITICAL", "UNKNOWN"]
    level = (
        F.when(F.upper(F.trim(F.col("risk_level"))).isin(levels[:4]), F.upper(F.trim(F.col("risk_level"))))
        .when(F.col("risk_score").isNull(), "UNKNOWN")
        .when(F.col("risk_score") > 80, "CRITICAL")
        .when(F.col("risk_score") > 60, "HIGH")
        .when(F.col("risk_score") > 30, "MEDIUM")
        .otherwise("LOW")
    )
    compliance = (
        events.withColumn("w", F.window("event_time", "30 minutes"))
        .withColumn("level", level)
        .groupBy("customer_id", "w")
        .agg(
            F.count(F.lit(1)).alias("transaction_count"),
            F.sum("amount").alias("total_amount"),
            flag("HIGH_VALUE").alias("high_value_count"),
            flag("HIGH_RISK").alias("high_risk_count"),
            flag("STRUCTURING_SUSPECTED").alias("structuring_count"),
            flag("SANCTIONS_CHECK_REQUIRED").alias("sanctions_count"),
            F.sum(F.when(flagged, 1).otherwise(0)).alias("flagged_count"),
            F.array_sort(F.collect_list(F.when(flagged, F.struct("line", "transaction_id")))).alias("flagged"),
            F.coalesce(F.sum(F.when(flagged, F.col("amount"))), F.lit(0)).alias("violation_amount"),
            *[F.sum(F.when(F.col("level") == lv, 1).otherwise(0)).alias(f"r_{lv}") for lv in levels],
        )
        .withColumn(
            "compliance_score",
            F.round((1.0 - F.col("flagged_count") / F.col("transaction_count")) * 10_000.0) / 10_000.0,
        )
        .select(
            "customer_id",
            *bounds(),
            "transaction_count",
            F.col("total_amount").cast("string").alias("total_amount"),
            "high_value_count",
            "high_risk_count",
            "structuring_count",
            "sanctions_count",
            "flagged_count",
            F.transform("flagged", lambda x: x["transaction_id"]).alias("flagged_transaction_ids"),
            F.col("violation_amount").cast("string").alias("violation_amount"),
            counts_json([(lv, F.col(f"r_{lv}")) for lv in levels]).alias("risk_distribution"),
            "compliance_score",
            ((F.col("compliance_score") < 0.7) | (F.col("sanctions_count") > 0)).alias("requires_review"),
        )
    )

    # customer_lifecycle: per customer, 15 minutes; the stage and the
    # lifetime totals carry across a customer's windows in order.
    lc = events.withColumn("w", F.window("event_time", "15 minutes"))

    def top_share(column):
        per = lc.where(F.col(column).isNotNull()).groupBy("customer_id", "w", column).count()
        return per.groupBy("customer_id", "w").agg(F.max("count").alias(f"top_{column}"))

    channels = counts_by(lc, "customer_id", "channel", "channel_usage")
    per_window = (
        lc.groupBy("customer_id", "w")
        .agg(
            F.count(F.lit(1)).alias("transaction_count"),
            F.sum("amount").alias("spend"),
            # No merchant dimension is loaded: every merchant's category is unknown.
            F.sum(F.when(F.col("merchant_id").isNotNull(), F.col("amount"))).alias("merchant_spend"),
        )
        .join(channels, ["customer_id", "w"], "left")
        .join(top_share("city"), ["customer_id", "w"], "left")
        .join(top_share("device"), ["customer_id", "w"], "left")
    )
    history = Window.partitionBy("customer_id").orderBy("w.start")
    so_far = history.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    day_ms = 86_400_000
    lifecycle = (
        per_window.withColumn("lifetime_transactions", F.sum("transaction_count").over(so_far))
        .withColumn("lifetime_spend", F.sum("spend").over(so_far))
        .withColumn("active_windows", F.count(F.lit(1)).over(so_far))
        .withColumn("previous_count", F.coalesce(F.lag("transaction_count").over(history), F.lit(0)))
        .withColumn("previous_end", F.lag(F.expr("unix_millis(w.end)")).over(history))
        .withColumn(
            "lifecycle_stage",
            F.when(
                F.col("previous_end").isNotNull()
                & (F.expr("unix_millis(w.start)") - F.col("previous_end") > 7 * day_ms),
                "REACTIVATED",
            )
            .when(F.col("lifetime_transactions") <= 5, "NEW")
            .when((F.col("previous_count") >= 4) & (F.col("transaction_count") * 3 < F.col("previous_count")), "AT_RISK")
            .when(F.col("active_windows") >= 8, "LOYAL")
            .otherwise("ACTIVE"),
        )
        .select(
            "customer_id",
            *bounds(),
            F.lit("UNKNOWN").alias("tier"),
            F.lit("UNKNOWN").alias("segment"),
            "transaction_count",
            F.col("spend").cast("string").alias("total_spend"),
            F.coalesce("channel_usage", F.lit("{}")).alias("channel_usage"),
            F.when(F.col("merchant_spend").isNull(), F.lit("{}"))
            .otherwise(F.to_json(F.create_map(F.lit("unknown"), F.col("merchant_spend").cast("string"))))
            .alias("spending_by_category"),
            (F.round(F.coalesce("top_city", F.lit(0)) / F.col("transaction_count") * 10_000.0) / 10_000.0).alias(
                "location_consistency"
            ),
            (F.round(F.coalesce("top_device", F.lit(0)) / F.col("transaction_count") * 10_000.0) / 10_000.0).alias(
                "device_consistency"
            ),
            "lifecycle_stage",
            "lifetime_transactions",
            F.col("lifetime_spend").cast("string").alias("lifetime_spend"),
        )
    )
    for name, df in [
        ("merchant_metrics", merchant),
        ("compliance_metrics", compliance),
        ("customer_lifecycle", lifecycle),
    ]:
        df.write.mode("overwrite").json(f"{out}/{name}")
    print(f"spark: done in {time.time() - started:.2f} s", file=sys.stderr)
    spark.stop()


if __name__ == "__main__":
    main()

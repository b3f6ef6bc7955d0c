//! E-commerce sales, from the reference's orders (events of kind PURCHASE)
//! and order lines (with the attributes `order`, `product`, `quantity` and
//! `category`; `examples/shop.toml` maps them from Debezium's `orders` and
//! `order_items`), over tumbling windows of 1 minute, 5 minutes and 1 hour
//! (`window_size` `1m`, `5m`, `1h`):
//!
//! - `revenue_stats`: per window with orders, the revenue, the orders, the
//!   average order value (half-up, 2 places), and the trend against the
//!   previous window of that size with orders: the revenue then, the change
//!   as a share of it, and UP, DOWN, FLAT or FIRST.
//! - `top_products`: the `top-n` (5) products by quantity and by revenue
//!   (the lines' amounts), each with both.
//! - `category_performance`: per category, the revenue, quantity and lines.
//! - `order_lines`: each line joined to its order by the `order` attribute,
//!   with the order's customer, status and time. The join waits for the
//!   two sides one minute of event time after the order's last event (a
//!   session window per order): a line whose order has not come by then is
//!   written unmatched (`matched` false, the order's columns null), and a
//!   line later than that starts a new wait.

use edge_rule_sdk::{
    aggregate, apply_settings, attribute, average, column, filtered, money_value, nullable,
    round_half_up, row, text, tumbling, window_table, with_kind, AggregateOp, Aggregates,
    ColumnType, Decimal, Emit, Field, KeyBy, KeyState, Manifest, Reader, RuleSet, State, TableSpec,
    TxnKind, TxnStatus, Value, Window, WindowKind, WindowSpec, Writer,
};
use std::sync::atomic::{AtomicU32, Ordering};

static TOP_N: AtomicU32 = AtomicU32::new(5);

/// The config keys and what each sets.
const CONFIG: [(&str, &AtomicU32); 1] = [("top-n", &TOP_N)];

/// The window sizes: label and length.
const SIZES: [(&str, i64); 3] = [("1m", 60_000), ("5m", 300_000), ("1h", 3_600_000)];

/// How long a join waits after an order's last event.
const JOIN_WAIT_MS: i64 = 60_000;

/// The revenue windows' aggregates.
const REVENUE: usize = 0;
const ORDERS: usize = 1;

/// The product windows' aggregates.
const QUANTITY: usize = 0;
const PRODUCT_REVENUE: usize = 1;
const CATEGORY_REVENUE: usize = 2;
const CATEGORY_QUANTITY: usize = 3;
const CATEGORY_LINES: usize = 4;

/// The last revenue of each window size with orders (the state of the one
/// global key of the revenue windows).
#[derive(Default)]
struct Last(Vec<(String, Decimal)>);

impl State for Last {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.0.len() as u32);
        for (size, revenue) in &self.0 {
            w.str(size);
            w.decimal(*revenue);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        let n = r.u32()?;
        let mut last = Vec::with_capacity(n.min(8) as usize);
        for _ in 0..n {
            last.push((r.str()?, r.decimal()?));
        }
        Some(Last(last))
    }
}

/// `table` with the columns `more` added to its key.
fn with_keys(mut table: TableSpec, more: &[&str]) -> TableSpec {
    table.key.extend(more.iter().map(|k| k.to_string()));
    table
}

fn status_name(s: TxnStatus) -> &'static str {
    match s {
        TxnStatus::Pending => "PENDING",
        TxnStatus::Completed => "COMPLETED",
        TxnStatus::Failed => "FAILED",
        TxnStatus::Reversed => "REVERSED",
    }
}

struct Sales;

impl RuleSet for Sales {
    fn manifest() -> Manifest {
        let mut windows = Vec::new();
        for (label, size) in SIZES {
            let mut revenue = tumbling(
                &format!("revenue-{label}"),
                size,
                KeyBy::Global,
                vec![
                    filtered(
                        "revenue",
                        AggregateOp::Sum(Field::Amount),
                        with_kind(TxnKind::Purchase),
                    ),
                    filtered("orders", AggregateOp::Count, with_kind(TxnKind::Purchase)),
                ],
            );
            revenue.with_state = true;
            windows.push(revenue);
        }
        for (label, size) in SIZES {
            windows.push(tumbling(
                &format!("products-{label}"),
                size,
                KeyBy::Global,
                vec![
                    aggregate(
                        "quantity",
                        AggregateOp::SumBy((attribute("product"), attribute("quantity"))),
                    ),
                    aggregate(
                        "revenue",
                        AggregateOp::SumBy((attribute("product"), Field::Amount)),
                    ),
                    aggregate(
                        "category-revenue",
                        AggregateOp::SumBy((attribute("category"), Field::Amount)),
                    ),
                    aggregate(
                        "category-quantity",
                        AggregateOp::SumBy((attribute("category"), attribute("quantity"))),
                    ),
                    aggregate(
                        "category-lines",
                        AggregateOp::CountBy(attribute("category")),
                    ),
                ],
            ));
        }
        windows.push(WindowSpec {
            name: "order-join".into(),
            kind: WindowKind::Session(JOIN_WAIT_MS),
            key: KeyBy::Attribute("order".into()),
            allowed_lateness_ms: 0,
            with_state: false,
            aggregates: vec![aggregate("events", AggregateOp::Collect)],
        });
        let size = || column("window_size", ColumnType::Text, "1m, 5m or 1h.");
        let money = ColumnType::Money(4);
        Manifest {
            name: "sales".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            state_key: None,
            state_ttl_ms: 0,
            windows,
            tables: vec![
                window_table(
                    "revenue_stats",
                    Some(size()),
                    vec![
                        column("revenue", money, "Sum of the orders' amounts."),
                        column("orders", ColumnType::Int, "Orders in the window."),
                        column(
                            "average_order_value",
                            ColumnType::Money(2),
                            "Revenue / orders, half-up to 2 places.",
                        ),
                        nullable(column(
                            "previous_revenue",
                            money,
                            "The revenue of the previous window of this size with orders.",
                        )),
                        nullable(column(
                            "revenue_change",
                            ColumnType::Float,
                            "(revenue - previous) / previous, 4 places.",
                        )),
                        column(
                            "trend",
                            ColumnType::Text,
                            "UP, DOWN, FLAT, or FIRST without a previous window.",
                        ),
                    ],
                ),
                with_keys(
                    window_table(
                        "top_products",
                        Some(size()),
                        vec![
                            column(
                                "ranking",
                                ColumnType::Text,
                                "QUANTITY or REVENUE: what the products are ranked by.",
                            ),
                            column("rank", ColumnType::Int, "1 for the first."),
                            column("product_id", ColumnType::Text, "The product."),
                            column("quantity", money, "Its quantity in the window."),
                            column("revenue", money, "Its lines' amounts."),
                        ],
                    ),
                    &["ranking", "rank"],
                ),
                with_keys(
                    window_table(
                        "category_performance",
                        Some(size()),
                        vec![
                            column("category", ColumnType::Text, "The category."),
                            column("revenue", money, "Its lines' amounts."),
                            column("quantity", money, "Its quantity."),
                            column("lines", ColumnType::Int, "Its order lines."),
                        ],
                    ),
                    &["category"],
                ),
                TableSpec {
                    name: "order_lines".into(),
                    key: vec!["line_id".into()],
                    columns: vec![
                        column("line_id", ColumnType::Text, "The line's transaction id."),
                        column("order_id", ColumnType::Text, "Its order."),
                        nullable(column("product_id", ColumnType::Text, "The product.")),
                        nullable(column("quantity", money, "The quantity.")),
                        column("amount", money, "The line's amount."),
                        column(
                            "matched",
                            ColumnType::Boolean,
                            "Whether its order came within the wait.",
                        ),
                        nullable(column(
                            "customer_id",
                            ColumnType::Text,
                            "The order's customer.",
                        )),
                        nullable(column(
                            "order_status",
                            ColumnType::Text,
                            "The order's status.",
                        )),
                        nullable(column("order_time", ColumnType::Time, "The order's time.")),
                        column("line_time", ColumnType::Time, "The line's time."),
                    ],
                },
            ],
        }
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        apply_settings(config, &CONFIG)
    }

    fn on_window(
        window: Window,
        aggs: Aggregates<'_>,
        state: &mut KeyState<'_>,
    ) -> Result<Vec<Emit>, String> {
        let spec = &*window.spec;
        if spec == "order-join" {
            return Ok(join(&window, &aggs));
        }
        let (kind, size) = spec.split_once('-').unwrap_or((spec, ""));
        let mut out = Vec::new();
        let times = |out: &mut Vec<Value>| {
            out.push(text(size));
            out.push(Value::Time(window.start));
            out.push(Value::Time(window.end));
        };
        if kind == "revenue" {
            let orders = aggs.count(ORDERS);
            if orders == 0 {
                return Ok(out);
            }
            let revenue = aggs.money(REVENUE).unwrap_or_default();
            let mut last: Last = state.read();
            let previous = last.0.iter().find(|(s, _)| s == size).map(|(_, r)| *r);
            let change = previous.filter(|p| !p.is_zero()).map(|p| {
                let ratio = edge_rule_sdk::to_f64((revenue - p) / p);
                (ratio * 10_000.0).round() / 10_000.0
            });
            let trend = match previous {
                None => "FIRST",
                Some(p) if revenue > p => "UP",
                Some(p) if revenue < p => "DOWN",
                Some(_) => "FLAT",
            };
            match last.0.iter_mut().find(|(s, _)| s == size) {
                Some(entry) => entry.1 = revenue,
                None => last.0.push((size.to_string(), revenue)),
            }
            state.write(&last);
            let mut values = Vec::new();
            times(&mut values);
            values.extend([
                money_value(round_half_up(revenue, 4)),
                Value::Int(orders as i64),
                money_value(average(revenue, orders)),
                previous.map_or(Value::Null, |p| money_value(round_half_up(p, 4))),
                change.map_or(Value::Null, Value::Float),
                text(trend),
            ]);
            out.push(row("revenue_stats", values));
            return Ok(out);
        }
        let top = TOP_N.load(Ordering::Relaxed) as usize;
        let quantities: Vec<(&str, Decimal)> = aggs.sums(QUANTITY).collect();
        let revenues: Vec<(&str, Decimal)> = aggs.sums(PRODUCT_REVENUE).collect();
        let of = |list: &[(&str, Decimal)], product: &str| {
            list.iter()
                .find(|(p, _)| *p == product)
                .map_or(Decimal::ZERO, |(_, d)| *d)
        };
        // Both ranked largest first (ties by name) by the host.
        for (ranking, list) in [("QUANTITY", &quantities), ("REVENUE", &revenues)] {
            for (rank, (product, _)) in list.iter().take(top).enumerate() {
                let mut values = Vec::new();
                times(&mut values);
                values.extend([
                    text(ranking),
                    Value::Int(rank as i64 + 1),
                    text(*product),
                    money_value(round_half_up(of(&quantities, product), 4)),
                    money_value(round_half_up(of(&revenues, product), 4)),
                ]);
                out.push(row("top_products", values));
            }
        }
        let quantity: Vec<(&str, Decimal)> = aggs.sums(CATEGORY_QUANTITY).collect();
        let lines: Vec<(&str, u64)> = aggs.counts(CATEGORY_LINES).collect();
        for (category, revenue) in aggs.sums(CATEGORY_REVENUE) {
            let mut values = Vec::new();
            times(&mut values);
            values.extend([
                text(category),
                money_value(round_half_up(revenue, 4)),
                money_value(round_half_up(of(&quantity, category), 4)),
                Value::Int(
                    lines
                        .iter()
                        .find(|(c, _)| *c == category)
                        .map_or(0, |(_, n)| *n) as i64,
                ),
            ]);
            out.push(row("category_performance", values));
        }
        Ok(out)
    }
}

/// The lines of one order's session joined to it.
fn join(window: &Window, aggs: &Aggregates<'_>) -> Vec<Emit> {
    let Some(events) = aggs.events(0) else {
        return Vec::new();
    };
    let order = (0..events.len()).find(|&i| events.kind(i) == TxnKind::Purchase);
    let product = events.attribute_index("product");
    let quantity = events.attribute_index("quantity");
    let mut out = Vec::new();
    for i in (0..events.len()).filter(|&i| Some(i) != order) {
        if events.kind(i) == TxnKind::Purchase {
            continue;
        }
        let attr = |j: Option<usize>| j.and_then(|j| events.attribute_at(i, j));
        let quantity = attr(quantity)
            .and_then(|q| q.trim().parse::<Decimal>().ok())
            .map_or(Value::Null, |q| money_value(round_half_up(q, 4)));
        let (customer, status, time) = match order {
            Some(o) => (
                text(events.customer(o)),
                text(status_name(events.status(o))),
                Value::Time(events.event_time(o)),
            ),
            None => (Value::Null, Value::Null, Value::Null),
        };
        out.push(row(
            "order_lines",
            vec![
                text(events.id(i)),
                text(window.key.as_str()),
                attr(product).map_or(Value::Null, text),
                quantity,
                money_value(round_half_up(events.amount(i), 4)),
                Value::Boolean(order.is_some()),
                customer,
                status,
                time,
                Value::Time(events.event_time(i)),
            ],
        ));
    }
    out
}

edge_rule_sdk::rule_set!(Sales);

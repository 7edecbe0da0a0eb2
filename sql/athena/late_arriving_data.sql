-- Late-arriving data: events whose ingest day (UTC) differs from their event day, by event day
-- and ingest day, with how many days late they came. Late rows are still in the right partition.
SELECT
    date(order_ts) AS event_date,
    date(ingested_at) AS ingest_date,
    date_diff('day', date(order_ts), date(ingested_at)) AS days_late,
    count(*) AS events
FROM orders
WHERE date(ingested_at) <> date(order_ts)
GROUP BY date(order_ts), date(ingested_at)
ORDER BY event_date, ingest_date

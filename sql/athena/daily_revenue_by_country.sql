-- Daily revenue by country: orders whose latest status is PAID or SHIPPED, per event day (UTC),
-- country and currency. Reads five columns of the curated table.
SELECT
    date(order_ts) AS order_date,
    country,
    currency,
    count(*) AS orders,
    sum(amount) AS revenue
FROM orders
WHERE status IN ('PAID', 'SHIPPED')
GROUP BY date(order_ts), country, currency
ORDER BY order_date, country, currency

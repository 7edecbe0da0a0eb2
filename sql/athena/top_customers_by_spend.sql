-- Top 20 customers by spend (orders PAID or SHIPPED) in each currency: spends in different
-- currencies are ranked apart, never against each other. Pseudonymous customer ids only: no PII
-- column is read, so the query works for analysts under Lake Formation.
SELECT
    currency,
    spend_rank,
    customer_id,
    orders,
    spend,
    last_order_ts
FROM (
    SELECT
        customer_id,
        currency,
        count(*) AS orders,
        sum(amount) AS spend,
        max(order_ts) AS last_order_ts,
        row_number() OVER (PARTITION BY currency ORDER BY sum(amount) DESC, customer_id) AS spend_rank
    FROM orders
    WHERE status IN ('PAID', 'SHIPPED')
    GROUP BY customer_id, currency
)
WHERE spend_rank <= 20
ORDER BY currency, spend_rank

-- Top 20 customers by spend (orders PAID or SHIPPED), per currency. Pseudonymous customer ids
-- only: no PII column is read, so the query works for analysts under Lake Formation.
SELECT
    customer_id,
    currency,
    count(*) AS orders,
    sum(amount) AS spend,
    max(order_ts) AS last_order_ts
FROM orders
WHERE status IN ('PAID', 'SHIPPED')
GROUP BY customer_id, currency
ORDER BY spend DESC, customer_id, currency
LIMIT 20

-- Order-status funnel: how many orders reached each stage (placed, paid, shipped, returned) by
-- their latest status, with the share of placed orders; cancelled orders are counted apart.
WITH latest AS (
    SELECT status FROM orders
),
stages AS (
    SELECT 1 AS step, 'placed' AS stage, count(*) AS orders FROM latest
    UNION ALL
    SELECT 2, 'paid', count(*) FROM latest WHERE status IN ('PAID', 'SHIPPED', 'RETURNED')
    UNION ALL
    SELECT 3, 'shipped', count(*) FROM latest WHERE status IN ('SHIPPED', 'RETURNED')
    UNION ALL
    SELECT 4, 'returned', count(*) FROM latest WHERE status = 'RETURNED'
    UNION ALL
    SELECT 5, 'cancelled', count(*) FROM latest WHERE status = 'CANCELLED'
)
SELECT
    step,
    stage,
    orders,
    round(100.0 * orders / nullif(max(CASE WHEN step = 1 THEN orders END) OVER (), 0), 1) AS pct_of_placed
FROM stages
ORDER BY step

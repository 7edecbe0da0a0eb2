-- Daily revenue by country as a materialized view over the curated orders (Spectrum); refresh
-- it after each pipeline run with REFRESH MATERIALIZED VIEW public.daily_revenue.
DROP MATERIALIZED VIEW IF EXISTS public.daily_revenue;
CREATE MATERIALIZED VIEW public.daily_revenue AUTO REFRESH NO AS
SELECT
    CAST(order_ts AS DATE) AS order_date,
    country,
    currency,
    COUNT(*) AS orders,
    SUM(amount) AS revenue
FROM curated.orders
WHERE status IN ('PAID', 'SHIPPED')
GROUP BY CAST(order_ts AS DATE), country, currency;
GRANT SELECT ON public.daily_revenue TO ROLE analyst;
GRANT SELECT ON public.daily_revenue TO ROLE pii_reader;

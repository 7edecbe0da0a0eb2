-- Daily revenue by country as a materialized view over the curated orders (Spectrum). Redshift
-- refreshes no view over external tables on its own: the warehouse's refresh schedule calls
-- public.sp_refresh_daily_revenue() (stage setting redshift_refresh_schedule).
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
-- The refresh, as the view's owner (only an owner may refresh a materialized view): the
-- schedule's database user may call it and do nothing else.
CREATE OR REPLACE PROCEDURE public.sp_refresh_daily_revenue()
AS $$
BEGIN
    REFRESH MATERIALIZED VIEW public.daily_revenue;
END;
$$ LANGUAGE plpgsql
SECURITY DEFINER;

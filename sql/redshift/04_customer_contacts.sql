-- Customer contacts with dynamic data masking: e-mail and phone are masked for everyone (PUBLIC)
-- and shown in clear to the pii_reader role, whose attachment has the higher priority.
CREATE TABLE IF NOT EXISTS public.customer_contacts (
    customer_id VARCHAR(64) NOT NULL,
    customer_email VARCHAR(254),
    customer_phone VARCHAR(32),
    last_order_ts TIMESTAMP
);
-- Each masking policy is created showing nothing, then given its expression: CREATE leaves a
-- policy that exists as it was, ALTER brings an older deployment's up to date, and a policy
-- whose ALTER failed hides the whole value.
-- ok-if-exists
CREATE MASKING POLICY mask_email WITH (email VARCHAR(254)) USING (CAST(NULL AS VARCHAR(254)));
-- The domain stays; a value without text on both sides of an @ (a typo, a phone number in the
-- e-mail field) is hidden whole, never shown as it is.
ALTER MASKING POLICY mask_email USING (
    CASE
        WHEN email LIKE '%_@_%' THEN REGEXP_REPLACE(email, '^.*@', '***@')
        WHEN email IS NOT NULL THEN '***'
    END
);
-- ok-if-exists
CREATE MASKING POLICY mask_phone WITH (phone VARCHAR(32)) USING (CAST(NULL AS VARCHAR(32)));
-- The last four digits stay; a value of four characters or fewer is hidden whole.
ALTER MASKING POLICY mask_phone USING (
    CASE
        WHEN LENGTH(phone) > 4 THEN '***-****-' || RIGHT(phone, 4)
        WHEN phone IS NOT NULL THEN '***'
    END
);
-- ok-if-exists
CREATE MASKING POLICY clear_email WITH (email VARCHAR(254)) USING (email);
-- ok-if-exists
CREATE MASKING POLICY clear_phone WITH (phone VARCHAR(32)) USING (phone);
-- ok-if-exists
ATTACH MASKING POLICY mask_email ON public.customer_contacts(customer_email) TO PUBLIC;
-- ok-if-exists
ATTACH MASKING POLICY mask_phone ON public.customer_contacts(customer_phone) TO PUBLIC;
-- ok-if-exists
ATTACH MASKING POLICY clear_email ON public.customer_contacts(customer_email) TO ROLE pii_reader PRIORITY 10;
-- ok-if-exists
ATTACH MASKING POLICY clear_phone ON public.customer_contacts(customer_phone) TO ROLE pii_reader PRIORITY 10;
-- Each customer's latest known contact: the e-mail and phone of their latest order that gave one
-- (an order may leave either out), and the time of their latest order. A copy of the curated
-- orders, filled again by the warehouse's refresh schedule (stage setting
-- redshift_refresh_schedule), which calls this procedure as its owner: rows go and come in one
-- transaction, so a reader sees the old copy or the new, and a customer erased from the curated
-- zone (docs/runbook.md) is gone from here after the next refresh.
CREATE OR REPLACE PROCEDURE public.sp_refresh_customer_contacts()
AS $$
BEGIN
    DELETE FROM public.customer_contacts;
    INSERT INTO public.customer_contacts
    SELECT customer_id, customer_email, customer_phone, last_order_ts
    FROM (
        SELECT
            customer_id,
            LAST_VALUE(customer_email) IGNORE NULLS OVER (
                PARTITION BY customer_id ORDER BY order_ts, order_id
                ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
            ) AS customer_email,
            LAST_VALUE(customer_phone) IGNORE NULLS OVER (
                PARTITION BY customer_id ORDER BY order_ts, order_id
                ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
            ) AS customer_phone,
            order_ts AS last_order_ts,
            ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY order_ts DESC, order_id DESC) AS recency
        FROM curated.orders
    ) AS latest
    WHERE recency = 1;
END;
$$ LANGUAGE plpgsql
SECURITY DEFINER;
-- The first fill, at deploy.
CALL public.sp_refresh_customer_contacts();
GRANT SELECT ON public.customer_contacts TO ROLE analyst;
GRANT SELECT ON public.customer_contacts TO ROLE pii_reader;

-- Customer contacts with dynamic data masking: e-mail and phone are masked for everyone (PUBLIC)
-- and shown in clear to the pii_reader role, whose attachment has the higher priority.
CREATE TABLE IF NOT EXISTS public.customer_contacts (
    customer_id VARCHAR(64) NOT NULL,
    customer_email VARCHAR(254),
    customer_phone VARCHAR(32),
    last_order_ts TIMESTAMP
);
-- ok-if-exists
CREATE MASKING POLICY mask_email WITH (email VARCHAR(254)) USING (REGEXP_REPLACE(email, '[^@]+@', '***@'));
-- ok-if-exists
CREATE MASKING POLICY mask_phone WITH (phone VARCHAR(32)) USING ('***-****-' || RIGHT(phone, 4));
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
TRUNCATE public.customer_contacts;
INSERT INTO public.customer_contacts
SELECT customer_id, MAX(customer_email), MAX(customer_phone), MAX(order_ts)
FROM curated.orders
GROUP BY customer_id;
GRANT SELECT ON public.customer_contacts TO ROLE analyst;
GRANT SELECT ON public.customer_contacts TO ROLE pii_reader;

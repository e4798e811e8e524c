-- The head office's PostgreSQL schema for pipelines/pos.yaml: UUID keys,
-- exact money, times with zones. Load it with psql, then fill it from the
-- sample SQLite data (scripts/make_pos_db.py) with a pgsqlite pipeline, as
-- tests/integration/test_pg_pos.py does, or with your own.
CREATE TABLE stores (
  id uuid PRIMARY KEY, name text NOT NULL, address text, timezone text,
  updated_at timestamptz NOT NULL);
CREATE TABLE terminals (
  id uuid PRIMARY KEY, store_id uuid NOT NULL REFERENCES stores(id), name text NOT NULL,
  updated_at timestamptz NOT NULL);
CREATE TABLE users (
  id uuid PRIMARY KEY, store_id uuid NOT NULL REFERENCES stores(id), name text NOT NULL,
  email text, role text NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE shifts (
  id uuid PRIMARY KEY, terminal_id uuid NOT NULL REFERENCES terminals(id),
  user_id uuid NOT NULL REFERENCES users(id), opened_at timestamptz NOT NULL,
  closed_at timestamptz, opening_cash numeric(10,2), updated_at timestamptz NOT NULL);
CREATE TABLE suppliers (
  id uuid PRIMARY KEY, name text NOT NULL, phone text, updated_at timestamptz NOT NULL);
CREATE TABLE products (
  id uuid PRIMARY KEY, store_id uuid NOT NULL REFERENCES stores(id),
  supplier_id uuid REFERENCES suppliers(id), barcode_number text, name text NOT NULL,
  brand text, size text, color text, category text, cost_price numeric(10,2),
  selling_price numeric(10,2) NOT NULL, master_stock_quantity integer NOT NULL DEFAULT 0,
  price_with_tax numeric(10,2) GENERATED ALWAYS AS (round(selling_price * 1.2, 2)) STORED,
  updated_at timestamptz NOT NULL);
CREATE TABLE orders (
  id uuid PRIMARY KEY, store_id uuid NOT NULL REFERENCES stores(id),
  shift_id uuid REFERENCES shifts(id), receipt_number text NOT NULL, customer_name text,
  total_amount numeric(10,2) NOT NULL, discount_amount numeric(10,2) DEFAULT 0,
  discount_percentage numeric(5,2) DEFAULT 0, delivery_cost numeric(10,2) DEFAULT 0,
  status text NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
  deleted_at timestamptz);
CREATE TABLE order_items (
  id uuid PRIMARY KEY, order_id uuid NOT NULL REFERENCES orders(id),
  product_id uuid NOT NULL REFERENCES products(id), product_barcode text,
  quantity integer NOT NULL, unit_price numeric(10,2) NOT NULL,
  total_price numeric(10,2) NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE payments (
  id uuid PRIMARY KEY, order_id uuid NOT NULL REFERENCES orders(id),
  amount numeric(10,2) NOT NULL, method text NOT NULL, payment_date timestamptz NOT NULL,
  updated_at timestamptz NOT NULL);
CREATE INDEX orders_updated ON orders(updated_at);
CREATE INDEX order_items_updated ON order_items(updated_at);
CREATE INDEX payments_updated ON payments(updated_at);

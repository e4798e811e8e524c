-- A point-of-sale terminal's SQLite schema for pipelines/pos.yaml: rows have
-- a local integer id, keep the office's UUID in server_id, and their foreign
-- keys hold local ids. sync_status and the like are the terminal's own.
CREATE TABLE stores (
  local_id INTEGER PRIMARY KEY, server_id TEXT UNIQUE, name TEXT NOT NULL, address TEXT,
  timezone TEXT, updated_at TEXT NOT NULL, sync_status TEXT DEFAULT 'pending');
CREATE TABLE terminals (
  local_id INTEGER PRIMARY KEY, server_id TEXT UNIQUE,
  store_id INTEGER NOT NULL REFERENCES stores(local_id), name TEXT NOT NULL,
  updated_at TEXT NOT NULL, sync_status TEXT DEFAULT 'pending');
CREATE TABLE users (
  local_id INTEGER PRIMARY KEY, server_id TEXT UNIQUE,
  store_id INTEGER NOT NULL REFERENCES stores(local_id), name TEXT NOT NULL, email TEXT,
  role TEXT NOT NULL, updated_at TEXT NOT NULL, sync_status TEXT DEFAULT 'pending');
CREATE TABLE shifts (
  local_id INTEGER PRIMARY KEY, server_id TEXT UNIQUE,
  terminal_id INTEGER NOT NULL REFERENCES terminals(local_id),
  user_id INTEGER NOT NULL REFERENCES users(local_id), opened_at TEXT NOT NULL,
  closed_at TEXT, opening_cash DECIMAL TEXT, updated_at TEXT NOT NULL,
  sync_status TEXT DEFAULT 'pending');
CREATE TABLE suppliers (
  local_id INTEGER PRIMARY KEY, server_id TEXT UNIQUE, name TEXT NOT NULL, phone TEXT,
  updated_at TEXT NOT NULL, sync_status TEXT DEFAULT 'pending');
CREATE TABLE products (
  local_id INTEGER PRIMARY KEY, server_id TEXT UNIQUE,
  store_id INTEGER NOT NULL REFERENCES stores(local_id),
  supplier_id INTEGER REFERENCES suppliers(local_id), barcode_number TEXT, name TEXT NOT NULL,
  brand TEXT, size TEXT, color TEXT, category TEXT, cost_price DECIMAL TEXT,
  selling_price DECIMAL TEXT NOT NULL, stock_quantity INTEGER NOT NULL DEFAULT 0,
  available_quantity INTEGER, updated_at TEXT NOT NULL, sync_status TEXT DEFAULT 'pending',
  sync_operation TEXT, last_sync_at TEXT);
CREATE TABLE orders (
  local_id INTEGER PRIMARY KEY, server_id TEXT UNIQUE,
  store_id INTEGER NOT NULL REFERENCES stores(local_id),
  shift_id INTEGER REFERENCES shifts(local_id), receipt_number TEXT NOT NULL,
  customer_name TEXT, total_amount DECIMAL TEXT NOT NULL, discount_amount DECIMAL TEXT,
  discount_percentage DECIMAL TEXT, delivery_cost DECIMAL TEXT, status TEXT NOT NULL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, deleted_at TEXT,
  sync_status TEXT DEFAULT 'pending');
CREATE TABLE order_items (
  local_id INTEGER PRIMARY KEY, server_id TEXT UNIQUE,
  order_id INTEGER NOT NULL REFERENCES orders(local_id),
  product_id INTEGER NOT NULL REFERENCES products(local_id), product_barcode TEXT,
  quantity INTEGER NOT NULL, unit_price DECIMAL TEXT NOT NULL,
  total_price DECIMAL TEXT NOT NULL, updated_at TEXT NOT NULL,
  sync_status TEXT DEFAULT 'pending');
CREATE TABLE payments (
  local_id INTEGER PRIMARY KEY, server_id TEXT UNIQUE,
  order_id INTEGER NOT NULL REFERENCES orders(local_id), amount DECIMAL TEXT NOT NULL,
  method TEXT NOT NULL, payment_date TEXT NOT NULL, updated_at TEXT NOT NULL,
  sync_status TEXT DEFAULT 'pending');
CREATE INDEX orders_updated ON orders(updated_at);
CREATE INDEX products_updated ON products(updated_at);

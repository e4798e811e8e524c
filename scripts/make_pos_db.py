#!/usr/bin/env python3
"""Creates the sample point-of-sale database that pipelines/pos.yaml syncs.

Deterministic for a given --seed: stores, terminals, users, shifts,
suppliers, products, orders, order_items and payments, with foreign keys and
an updated_at on every table. Used by the quick start and by the tests.
"""
import argparse
import os
import random
import sqlite3
import uuid

SCHEMA = """
CREATE TABLE stores (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, address TEXT, timezone TEXT,
  updated_at TIMESTAMP NOT NULL);
CREATE TABLE terminals (
  id TEXT PRIMARY KEY, store_id TEXT NOT NULL REFERENCES stores(id), name TEXT NOT NULL,
  updated_at TIMESTAMP NOT NULL);
CREATE TABLE users (
  id TEXT PRIMARY KEY, store_id TEXT NOT NULL REFERENCES stores(id), name TEXT NOT NULL,
  email TEXT, role TEXT NOT NULL, updated_at TIMESTAMP NOT NULL);
CREATE TABLE shifts (
  id TEXT PRIMARY KEY, terminal_id TEXT NOT NULL REFERENCES terminals(id),
  user_id TEXT NOT NULL REFERENCES users(id), opened_at TIMESTAMP NOT NULL,
  closed_at TIMESTAMP, opening_cash NUMERIC(10,2), updated_at TIMESTAMP NOT NULL);
CREATE TABLE suppliers (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, phone TEXT, updated_at TIMESTAMP NOT NULL);
CREATE TABLE products (
  id TEXT PRIMARY KEY, store_id TEXT NOT NULL REFERENCES stores(id),
  supplier_id TEXT REFERENCES suppliers(id), barcode_number TEXT, name TEXT NOT NULL,
  brand TEXT, size TEXT, color TEXT, category TEXT, cost_price NUMERIC(10,2),
  selling_price NUMERIC(10,2) NOT NULL, master_stock_quantity INTEGER NOT NULL DEFAULT 0,
  updated_at TIMESTAMP NOT NULL);
CREATE TABLE orders (
  id TEXT PRIMARY KEY, store_id TEXT NOT NULL REFERENCES stores(id),
  shift_id TEXT REFERENCES shifts(id), receipt_number TEXT NOT NULL, customer_name TEXT,
  total_amount NUMERIC(10,2) NOT NULL, discount_amount NUMERIC(10,2) DEFAULT 0,
  discount_percentage NUMERIC(5,2) DEFAULT 0, delivery_cost NUMERIC(10,2) DEFAULT 0,
  status TEXT NOT NULL, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL,
  deleted_at TIMESTAMP);
CREATE TABLE order_items (
  id TEXT PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id),
  product_id TEXT NOT NULL REFERENCES products(id), product_barcode TEXT,
  quantity INTEGER NOT NULL, unit_price NUMERIC(10,2) NOT NULL,
  total_price NUMERIC(10,2) NOT NULL, updated_at TIMESTAMP NOT NULL);
CREATE TABLE payments (
  id TEXT PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id),
  amount NUMERIC(10,2) NOT NULL, method TEXT NOT NULL, payment_date TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL);
CREATE INDEX orders_updated ON orders(updated_at);
CREATE INDEX order_items_updated ON order_items(updated_at);
CREATE INDEX payments_updated ON payments(updated_at);
"""

BRANDS = ["Acme", "Northwind", "Contoso", "Fabrikam", "Tailspin", None]
COLORS = ["red", "blue", "black", "white", "green", None]
SIZES = ["S", "M", "L", "XL", None]
METHODS = ["cash", "card", "mobile"]


def ts(rng, base=1735689600, span=300 * 86400):
    """A 'YYYY-MM-DD HH:MM:SS' UTC time in 2025."""
    import time
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(base + rng.randrange(span)))


def uid(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build(path, orders, seed):
    rng = random.Random(seed)
    if os.path.exists(path):
        os.remove(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    stores = [(uid(rng), f"Store {i}", f"{i} High Street", "Europe/London", ts(rng)) for i in range(1, 4)]
    db.executemany("INSERT INTO stores VALUES (?,?,?,?,?)", stores)
    terminals = [(uid(rng), s[0], f"Till {j}", ts(rng)) for s in stores for j in range(1, 3)]
    db.executemany("INSERT INTO terminals VALUES (?,?,?,?)", terminals)
    users = [(uid(rng), rng.choice(stores)[0], f"User {i}", f"user{i}@shop.example",
              rng.choice(["cashier", "manager"]), ts(rng)) for i in range(1, 9)]
    db.executemany("INSERT INTO users VALUES (?,?,?,?,?,?)", users)
    shifts = []
    for i in range(1, 41):
        opened = ts(rng)
        shifts.append((uid(rng), rng.choice(terminals)[0], rng.choice(users)[0], opened,
                       None if i % 10 == 0 else opened, round(rng.uniform(50, 200), 2), opened))
    db.executemany("INSERT INTO shifts VALUES (?,?,?,?,?,?,?)", shifts)
    suppliers = [(uid(rng), f"Supplier {i}", f"+44 20 7946 0{i:03d}", ts(rng)) for i in range(1, 6)]
    db.executemany("INSERT INTO suppliers VALUES (?,?,?,?)", suppliers)
    products = []
    for i in range(1, 121):
        barcode = None if i % 15 == 0 else ("" if i % 29 == 0 else f"50{i:011d}")
        cost = round(rng.uniform(1, 60), 2)
        products.append((uid(rng), rng.choice(stores)[0], rng.choice(suppliers)[0], barcode,
                         f"Product {i}", rng.choice(BRANDS), rng.choice(SIZES), rng.choice(COLORS),
                         rng.choice(["shoes", "shirts", "bags"]), cost, round(cost * 1.6, 2),
                         rng.randrange(0, 200), ts(rng)))
    db.executemany("INSERT INTO products VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", products)
    for i in range(1, orders + 1):
        oid, shift = uid(rng), rng.choice(shifts)
        created = ts(rng)
        items, total = [], 0.0
        for _ in range(rng.randrange(1, 4)):
            p = rng.choice(products)
            q = rng.randrange(1, 4)
            items.append((uid(rng), oid, p[0], p[3], q, p[10], round(q * p[10], 2), created))
            total += q * p[10]
        db.execute("INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (oid, rng.choice(stores)[0], shift[0], f"R{i:06d}", rng.choice([None, "Ann", "Bo"]),
                    round(total, 2), 0, 0, 0, "completed", created, created, None))
        db.executemany("INSERT INTO order_items VALUES (?,?,?,?,?,?,?,?)", items)
        db.execute("INSERT INTO payments VALUES (?,?,?,?,?,?)",
                   (uid(rng), oid, round(total, 2), rng.choice(METHODS), created, created))
    db.commit()
    db.close()


def terminal(path):
    """An empty terminal database with the schema of pipelines/sample/terminal.sql."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "pipelines", "sample", "terminal.sql")) as f:
        sql = f.read()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(sql)
    db.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--orders", type=int, default=500)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--if-missing", action="store_true", help="keep an existing database")
    ap.add_argument("--terminal", help="also create an empty terminal database here")
    a = ap.parse_args()
    if a.terminal and not (a.if_missing and os.path.exists(a.terminal)):
        terminal(a.terminal)
        print(f"empty terminal database: {a.terminal}")
    if a.if_missing and os.path.exists(a.out):
        return
    build(a.out, a.orders, a.seed)
    print(f"sample POS database: {a.out}")


if __name__ == "__main__":
    main()

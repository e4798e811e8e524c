#!/usr/bin/env python3
"""Mock of the Shopify REST Admin API subset used by the `shopify` source plugin.

Reproduces /work/shared/specs/README.md §3 (REST endpoints, versioning, auth,
Link/page_info pagination, leaky-bucket rate limit, error bodies) with object
shapes taken from shared/specs/shopify/*-fixtures. See tests/mock/README.md.

    python3 tests/mock/shopify.py --port 0 [--seed 1 --orders 60 --shops a,b ...]
"""
import copy
import decimal
import hashlib
import hmac
import json
import math
import os
import random
import re
import string
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mockbase import (Mock, HTTPError, json_response, parse_time_us,  # noqa: E402
                      b64url, b64url_decode, deep_merge, main)

# Ids: every id is far above 2^53 (9007199254740992), so a client that parses
# JSON numbers as doubles corrupts them (doubles near 5e18 are 1024 apart).
ID_BASE = {
    "order": 5_000_000_000_000_000_000,
    "line_item": 5_100_000_000_000_000_000,
    "product": 5_200_000_000_000_000_000,
    "variant": 5_300_000_000_000_000_000,
    "customer": 5_400_000_000_000_000_000,
    "location": 5_500_000_000_000_000_000,
    "inventory_item": 5_600_000_000_000_000_000,
    "image": 5_700_000_000_000_000_000,
    "address": 5_800_000_000_000_000_000,
    "shipping_line": 5_900_000_000_000_000_000,
}
SHOP_STRIDE = 1_000_000_000_000      # id space per shop (ids stay unique across shops)

DEFAULT_VERSIONS = "2024-10,2025-01,2025-04,2025-07,2025-10,2026-01"
ORDER_STATUSES = {"open", "closed", "cancelled", "any"}
FINANCIAL = ["paid", "paid", "paid", "pending", "authorized", "partially_refunded", "refunded", "voided"]
FIN_FILTERS = {"authorized", "pending", "paid", "partially_paid", "refunded", "voided",
               "partially_refunded", "any", "unpaid"}
FUL_FILTERS = {"shipped", "partial", "unshipped", "any", "unfulfilled"}
PRODUCT_STATUSES = {"active", "archived", "draft"}
CANCEL_REASONS = ["customer", "inventory", "fraud", "declined", "other"]

FIRST = ["Bob", "Alice", "Chen", "Dana", "Emeka", "Freya", "Giulia", "Hiro", "Ines", "Jonas", "Kai",
         "Léa", "Marta", "Noor", "Owen", "Priya", "Quinn", "Rosa", "Søren", "Tariq"]
LAST = ["Norman", "Smith", "O'Brien", "Müller", "Nakamura", "García", "Okafor", "Kowalski", "Dubois",
        "Rossi", "Andersen", "Haddad", "Silva", "Park", "Novak"]
VENDORS = ["Apple", "Etl Goods", "Northwind", "Acme", "Café Crème Co."]
PRODUCT_TYPES = ["Cult Products", "Apparel", "Home", "Snacks", "Accessories"]
ADJ = ["Classic", "Organic", "Vintage", "Deluxe", "Everyday", "Mini", "Handmade", "Nordic", "Rustic", "Zesty"]
NOUN = ["IPod Nano", "Hoodie", "Tote Bag", "Candle", "Notebook", "Mug", "T-Shirt", "Beanie", "Teapot",
        "Scarf", "Water Bottle", "Plant Pot", "Card Deck", "Sourdough Loaf", "Trail Mix"]
OPTIONS = [["Default Title"], ["Small", "Large"], ["Pink", "Red", "Green", "Black"], ["S", "M", "L"]]
CITIES = [("Louisville", "Kentucky", "KY", "40202", "US", "United States"),
          ("Ottawa", "Ontario", "ON", "K1P 1J1", "CA", "Canada"),
          ("Brooklyn", "New York", "NY", "11201", "US", "United States"),
          ("Berlin", None, None, "10115", "DE", "Germany"),
          ("Portland", "Oregon", "OR", "97201", "US", "United States")]
LOCATION_NAMES = ["Fifth Avenue AppleStore", "Berlin Store", "Warehouse", "Pop-up Shop", "Outlet"]

TWO = decimal.Decimal("0.01")


def money(d):
    return str(decimal.Decimal(d).quantize(TWO, rounding=decimal.ROUND_HALF_UP))


def fmt_local(ts, off_min):
    """Epoch seconds -> '2024-05-01T10:00:00-04:00' in a fixed UTC offset (minutes)."""
    t = int(math.floor(ts)) + off_min * 60
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    a = abs(off_min)
    return s + "%s%02d:%02d" % ("-" if off_min < 0 else "+", a // 60, a % 60)


def parse_offset(text):
    m = re.match(r"^([+-])(\d{2}):?(\d{2})$", text.strip())
    if not m:
        raise ValueError("bad UTC offset %r (want e.g. -04:00)" % text)
    v = int(m.group(2)) * 60 + int(m.group(3))
    return -v if m.group(1) == "-" else v


class Shop:
    """One shop: its data, its leaky bucket and its id counters."""

    def __init__(self, name, index):
        self.name = name
        self.index = index
        self.orders = {}
        self.products = {}
        self.customers = {}
        self.locations = {}
        self.levels = {}          # (inventory_item_id, location_id) -> level
        self.level = 0.0          # leaky bucket fill
        self.last = None          # mock-clock time of the last leak computation
        self.seq = {}             # kind -> last id handed out
        self.rng = random.Random(1000003 + index)   # ids of objects made through the control API

    def new_id(self, kind, rng=None):
        base = ID_BASE[kind] + self.index * SHOP_STRIDE
        cur = max(self.seq.get(kind, base), base)
        step = (rng or self.rng).randint(1, 997)
        self.seq[kind] = cur + step
        return cur + step

    def note_id(self, kind, i):
        if isinstance(i, int) and i > self.seq.get(kind, 0):
            self.seq[kind] = i


class ShopifyMock(Mock):
    name = "shopify"

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--token", action="append",
                       help="a valid access token, TOKEN or SHOP=TOKEN (repeatable); default shpat_test "
                            "(one shop) or shpat_test_<shop> for each shop of --shops")
        p.add_argument("--shops", help="comma-separated shop names (default: one shop, test-shop)")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--orders", type=int, default=60)
        p.add_argument("--products", type=int, default=25)
        p.add_argument("--customers", type=int, default=30)
        p.add_argument("--locations", type=int, default=3)
        p.add_argument("--max-variants", type=int, default=4)
        p.add_argument("--base-time", default="2024-05-01T10:00:00-04:00",
                       help="generated data is stamped from this time on (a 30-day window)")
        p.add_argument("--utc-offset", default="-04:00", help="the shop's UTC offset used to render timestamps")
        p.add_argument("--currency", default="USD")
        p.add_argument("--versions", default=DEFAULT_VERSIONS,
                       help="supported API versions (comma-separated, YYYY-MM); others fall forward to the oldest")
        p.add_argument("--bucket", type=float, default=40, help="leaky bucket size (calls)")
        p.add_argument("--leak", type=float, default=2, help="leak rate (calls per second, mock clock)")
        p.add_argument("--limit-over-max", choices=["error", "clamp"], default="error",
                       help="limit > 250: 400 (default) or silently use 250")
        p.add_argument("--no-throttle", action="store_true",
                       help="never answer 429 from the bucket (the call-limit header still counts)")
        p.add_argument("--data", help="load data from this JSON file instead of generating it")
        p.add_argument("--dump", help="write the generated data to this JSON file and exit")

    def setup_routes(self):
        self.secret = hashlib.sha256(b"shopify-mock-page-info-%d" % self.args.seed).digest()
        V = r"/admin/api/(?P<version>[^/]+)"
        r = self.route
        for res in ("orders", "products", "customers"):
            r("GET", V + "/%s\\.json" % res, self.api(self.list_resource, res))
            r("GET", V + "/%s/count\\.json" % res, self.api(self.count_resource, res))
            r("GET", V + "/%s/(?P<id>\\d+)\\.json" % res, self.api(self.get_resource, res))
        r("GET", V + r"/products/(?P<id>\d+)/variants\.json", self.api(self.list_variants))
        r("GET", V + r"/locations\.json", self.api(self.list_locations))
        r("GET", V + r"/locations/count\.json", self.api(self.count_locations))
        r("GET", V + r"/locations/(?P<id>\d+)\.json", self.api(self.get_location))
        r("GET", V + r"/locations/(?P<lid>\d+)/inventory_levels\.json", self.api(self.location_levels))
        r("GET", V + r"/inventory_levels\.json", self.api(self.list_levels))
        r("GET", V + r"/shop\.json", self.api(self.get_shop))
        c = self.control
        c("POST", "tokens", self.ctl_tokens)
        c("GET", "tokens", self.ctl_get_tokens)
        c("POST", "order", self.ctl_order)
        c("POST", "product", self.ctl_product)
        c("POST", "customer", self.ctl_customer)
        c("POST", "inventory", self.ctl_inventory)
        c("POST", "delete", self.ctl_delete)
        c("POST", "config", self.ctl_config)
        c("GET", "bucket", self.ctl_get_bucket)
        c("POST", "bucket", self.ctl_bucket)

    # ------------------------------------------------------------------ config / data
    def load(self):
        a = self.args
        self.offset = parse_offset(a.utc_offset)
        names = [s.strip() for s in (a.shops or "").split(",") if s.strip()] or ["test-shop"]
        self.config = {"bucket": float(a.bucket), "leak": float(a.leak),
                       "versions": sorted(v.strip() for v in a.versions.split(",") if v.strip()),
                       "limit_over_max": a.limit_over_max, "retry_after": 2.0,
                       "throttle": not a.no_throttle}
        self.stats = {"requests": 0, "throttled": 0}
        self.shops = {}
        if a.data:
            with open(a.data, encoding="utf-8") as f:
                data = json.load(f)
            shops = data.get("shops") if isinstance(data.get("shops"), dict) else {names[0]: data}
            for i, (name, sd) in enumerate(shops.items()):
                shop = Shop(name, i)
                self.shops[name] = shop
                self.load_shop(shop, sd)
        else:
            for i, name in enumerate(names):
                shop = Shop(name, i)
                self.shops[name] = shop
                self.generate(shop, random.Random(a.seed * 1000 + i))
        self.tokens = {}
        first = next(iter(self.shops))
        for t in a.token or []:
            if "=" in t:
                s, tok = t.split("=", 1)
                if s not in self.shops:
                    raise SystemExit("--token %s: unknown shop %s" % (t, s))
                self.tokens[tok] = s
            else:
                self.tokens[t] = first
        if not self.tokens:
            if len(self.shops) == 1:
                self.tokens["shpat_test"] = first
            else:
                for s in self.shops:
                    self.tokens["shpat_test_" + s] = s

    def load_shop(self, shop, sd):
        for o in sd.get("orders", []):
            shop.orders[o["id"]] = copy.deepcopy(o)
            shop.note_id("order", o["id"])
            for li in o.get("line_items", []):
                shop.note_id("line_item", li.get("id"))
        for p in sd.get("products", []):
            shop.products[p["id"]] = copy.deepcopy(p)
            shop.note_id("product", p["id"])
            for v in p.get("variants", []):
                shop.note_id("variant", v.get("id"))
                shop.note_id("inventory_item", v.get("inventory_item_id"))
        for c in sd.get("customers", []):
            shop.customers[c["id"]] = copy.deepcopy(c)
            shop.note_id("customer", c["id"])
        for l in sd.get("locations", []):
            shop.locations[l["id"]] = copy.deepcopy(l)
            shop.note_id("location", l["id"])
        for lv in sd.get("inventory_levels", []):
            shop.levels[(lv["inventory_item_id"], lv["location_id"])] = copy.deepcopy(lv)

    def ts(self, t):
        return fmt_local(t, self.offset)

    def now_ts(self):
        return self.ts(self.now())

    def generate(self, shop, rng):
        a = self.args
        base = parse_time_us(a.base_time, require_offset=False) / 1e6
        span = 30 * 86400
        cur = a.currency
        gid = "gid://shopify/%s/%d"

        # locations (the last of 3+ is inactive)
        for i in range(a.locations):
            city, prov, pcode, z, cc, cname = CITIES[i % len(CITIES)]
            lid = shop.new_id("location", rng)
            t = self.ts(base - 86400 * (300 - 20 * i))
            shop.locations[lid] = {
                "id": lid, "name": LOCATION_NAMES[i] if i < len(LOCATION_NAMES) else "Location %d" % (i + 1),
                "address1": "%d Chestnut Street" % rng.randint(1, 200), "address2": "", "city": city,
                "zip": z, "province": prov, "country": cc, "phone": "555-625-%04d" % rng.randint(0, 9999),
                "created_at": t, "updated_at": t, "country_code": cc, "country_name": cname,
                "province_code": pcode, "legacy": False,
                "active": not (a.locations >= 3 and i == a.locations - 1),
                "admin_graphql_api_id": gid % ("Location", lid)}
        active_locs = [l for l in shop.locations.values() if l["active"]]

        # products + variants + inventory levels
        for i in range(a.products):
            pid = shop.new_id("product", rng)
            created = base + 600 * i
            updated = created + rng.randint(0, span)
            title = "%s %s" % (rng.choice(ADJ), rng.choice(NOUN))
            if i % 11 == 4:
                title += " – Édition spéciale"      # non-ASCII on purpose
            status = "archived" if i % 9 == 5 else ("draft" if i % 7 == 3 else "active")
            opts = OPTIONS[rng.randint(0, min(len(OPTIONS), max(1, a.max_variants)) - 1)]
            opts = opts[:max(1, a.max_variants)]
            variants = []
            for k, opt in enumerate(opts):
                vid = shop.new_id("variant", rng)
                iid = shop.new_id("inventory_item", rng)
                qty = rng.randint(-2, 60)
                price = decimal.Decimal(rng.randint(3, 300)) - decimal.Decimal("0.01") * rng.choice([0, 1, 5, 51])
                variants.append({
                    "id": vid, "product_id": pid, "title": opt, "price": money(price),
                    "sku": "SKU-%d-%02d-%d" % (shop.index, i + 1, k + 1) if (i * 7 + k) % 13 else "",
                    "position": k + 1, "inventory_policy": "deny" if k % 2 else "continue",
                    "compare_at_price": money(price * decimal.Decimal("1.2")) if i % 5 == 0 else None,
                    "fulfillment_service": "manual", "inventory_management": "shopify",
                    "option1": opt, "option2": None, "option3": None,
                    "created_at": self.ts(created), "updated_at": self.ts(updated),
                    "taxable": True, "barcode": "".join(rng.choice(string.digits) for _ in range(12)),
                    "grams": rng.randint(50, 2000), "weight": 0.2, "weight_unit": "kg",
                    "inventory_item_id": iid, "inventory_quantity": qty, "old_inventory_quantity": qty,
                    "requires_shipping": True, "admin_graphql_api_id": gid % ("ProductVariant", vid)})
                for loc in active_locs:
                    if rng.random() < 0.85:
                        shop.levels[(iid, loc["id"])] = {
                            "inventory_item_id": iid, "location_id": loc["id"],
                            "available": rng.randint(-1, 40),
                            "updated_at": self.ts(updated + rng.randint(0, 86400 * 5)),
                            "admin_graphql_api_id": "gid://shopify/InventoryLevel/%d?inventory_item_id=%d"
                                                    % (loc["id"], iid)}
            img = shop.new_id("image", rng)
            shop.products[pid] = {
                "id": pid, "title": title, "body_html": "<p>The %s, by Etl Goods.</p>" % title.lower(),
                "vendor": rng.choice(VENDORS), "product_type": rng.choice(PRODUCT_TYPES),
                "created_at": self.ts(created), "handle": re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
                + "-%d" % (i + 1),
                "updated_at": self.ts(updated),
                "published_at": None if status == "draft" else self.ts(created + 60),
                "template_suffix": None, "published_scope": "web",
                "tags": ", ".join(sorted(rng.sample(["Emotive", "Flash Memory", "MP3", "Music", "Sale", "New"], 2))),
                "status": status, "admin_graphql_api_id": gid % ("Product", pid), "variants": variants,
                "options": [{"id": pid + 1, "product_id": pid, "name": "Title" if len(opts) == 1 else "Option",
                             "position": 1, "values": list(opts)}],
                "images": [{"id": img, "product_id": pid, "position": 1, "created_at": self.ts(created),
                            "updated_at": self.ts(created), "alt": None, "width": 640, "height": 480,
                            "src": "https://cdn.shopify.com/s/files/1/0000/0001/products/p%d.png" % (i + 1),
                            "variant_ids": []}]}
            shop.products[pid]["image"] = copy.deepcopy(shop.products[pid]["images"][0])

        # customers
        for i in range(a.customers):
            cid = shop.new_id("customer", rng)
            created = base + 300 * i
            fn, ln = rng.choice(FIRST), rng.choice(LAST)
            city, prov, pcode, z, cc, cname = rng.choice(CITIES)
            aid = shop.new_id("address", rng)
            addr = {"id": aid, "customer_id": cid, "first_name": fn, "last_name": ln, "company": None,
                    "address1": "%d Chestnut Street" % rng.randint(1, 200), "address2": "", "city": city,
                    "province": prov, "country": cname, "zip": z, "phone": "555-625-%04d" % rng.randint(0, 9999),
                    "name": "%s %s" % (fn, ln), "province_code": pcode, "country_code": cc,
                    "country_name": cname, "default": True}
            shop.customers[cid] = {
                "id": cid, "email": "%s.%s%d@example.com" % (fn.lower(), re.sub(r"\W", "", ln.lower()), i),
                "accepts_marketing": i % 3 == 0, "created_at": self.ts(created),
                "updated_at": self.ts(created + rng.randint(0, span)), "first_name": fn, "last_name": ln,
                "orders_count": 0, "state": ["disabled", "enabled", "invited", "declined"][i % 4],
                "total_spent": "0.00", "last_order_id": None, "note": None, "verified_email": True,
                "multipass_identifier": None, "tax_exempt": False, "tags": "", "last_order_name": None,
                "currency": cur, "phone": None, "addresses": [addr], "default_address": copy.deepcopy(addr),
                "admin_graphql_api_id": gid % ("Customer", cid)}

        # orders
        sellable = [(p, v) for p in shop.products.values() for v in p["variants"]]
        custs = list(shop.customers.values())
        for i in range(a.orders if sellable else 0):
            created = base + span * i / max(1, a.orders) + rng.randint(0, 1800)
            o = {"id": shop.new_id("order", rng), "created_at": self.ts(created)}
            r = rng.random()
            closed = cancelled = None
            if r < 0.12:
                cancelled = created + rng.randint(600, 86400 * 3)
                closed = cancelled
            elif r < 0.45:
                closed = created + rng.randint(3600, 86400 * 10)
            updated = max([created] + [t for t in (closed, cancelled) if t])
            if rng.random() < 0.3:
                updated += rng.randint(60, 86400 * 5)     # touched later (note, tags, refund...)
            o["updated_at"] = self.ts(updated)
            o["closed_at"] = self.ts(closed) if closed else None
            o["cancelled_at"] = self.ts(cancelled) if cancelled else None
            o["cancel_reason"] = rng.choice(CANCEL_REASONS) if cancelled else None
            o["processed_at"] = o["created_at"]
            o["number"] = i + 1
            o["financial_status"] = "voided" if cancelled else rng.choice(FINANCIAL)
            o["fulfillment_status"] = ("fulfilled" if closed and not cancelled
                                       else rng.choice([None, None, "partial"]))
            cust = rng.choice(custs) if custs and rng.random() < 0.9 else None
            lines = []
            for _ in range(rng.randint(1, 4)):
                p, v = rng.choice(sellable)
                lines.append(self.make_line(shop, p, v, rng.randint(1, 3), rng))
            o["line_items"] = lines
            if rng.random() < 0.2:
                o["discount_codes"] = [{"code": "TENOFF", "amount": "10.00", "type": "fixed_amount"}]
            self.fill_order(shop, o, cust, rng)
            shop.orders[o["id"]] = o
        self.rollup_customers(shop)

    def make_line(self, shop, p, v, qty, rng=None):
        return {"id": shop.new_id("line_item", rng), "variant_id": v["id"], "product_id": p["id"],
                "title": p["title"], "variant_title": v["title"], "name": "%s - %s" % (p["title"], v["title"]),
                "sku": v.get("sku"), "vendor": p.get("vendor"), "quantity": qty, "price": v["price"],
                "grams": v.get("grams", 0), "requires_shipping": True, "taxable": True, "gift_card": False,
                "fulfillment_service": "manual", "fulfillment_status": None, "fulfillable_quantity": qty,
                "product_exists": True, "total_discount": "0.00", "properties": [], "tax_lines": [],
                "admin_graphql_api_id": None}     # set by fill_order

    def fill_order(self, shop, o, cust=None, rng=None):
        """Defaults and money rollups of an order (money as decimal strings)."""
        cur = self.args.currency
        o.setdefault("number", len(shop.orders) + 1)
        rng = rng or shop.rng
        o.setdefault("created_at", self.now_ts())
        o.setdefault("updated_at", o["created_at"])
        o.setdefault("processed_at", o["created_at"])
        for k in ("closed_at", "cancelled_at", "cancel_reason", "fulfillment_status", "note", "location_id",
                  "user_id", "app_id", "browser_ip", "checkout_token", "reference"):
            o.setdefault(k, None)
        o.setdefault("financial_status", "paid")
        o["order_number"] = 1000 + int(o["number"])
        o["name"] = "#%d" % o["order_number"]
        o.setdefault("currency", cur)
        o["presentment_currency"] = o["currency"]
        o.setdefault("confirmed", True)
        o.setdefault("test", False)
        o.setdefault("taxes_included", False)
        o.setdefault("buyer_accepts_marketing", False)
        o.setdefault("gateway", "shopify_payments")
        o.setdefault("source_name", "web")
        o.setdefault("tags", "")
        o.setdefault("note_attributes", [])
        o.setdefault("discount_codes", [])
        o.setdefault("fulfillments", [])
        o.setdefault("refunds", [])
        o.setdefault("token", hashlib.md5(str(o["id"]).encode()).hexdigest())
        o.setdefault("cart_token", hashlib.md5(b"c" + str(o["id"]).encode()).hexdigest())
        o["admin_graphql_api_id"] = "gid://shopify/Order/%d" % o["id"]
        o["order_status_url"] = "https://%s.myshopify.com/1/orders/%s/authenticate" % (shop.name, o["token"])
        if cust is not None:
            o["customer"] = {k: copy.deepcopy(cust.get(k)) for k in
                             ("id", "email", "accepts_marketing", "created_at", "updated_at", "first_name",
                              "last_name", "state", "note", "verified_email", "tax_exempt", "tags", "currency",
                              "phone", "admin_graphql_api_id", "default_address")}
            o["email"] = o["contact_email"] = cust.get("email")
            addr = dict(cust.get("default_address") or {})
            for k in ("id", "customer_id", "default", "country_name"):
                addr.pop(k, None)
            o["billing_address"] = addr
            o["shipping_address"] = copy.deepcopy(addr)
        else:
            o.setdefault("customer", None)
            o.setdefault("email", "")
            o.setdefault("contact_email", None)
            o.setdefault("billing_address", None)
            o.setdefault("shipping_address", None)
        rate = decimal.Decimal("0.06")
        line_total = decimal.Decimal(0)
        weight = 0
        for li in o.get("line_items", []):
            if not li.get("id"):
                li["id"] = shop.new_id("line_item", rng)
            li["admin_graphql_api_id"] = "gid://shopify/LineItem/%d" % li["id"]
            q = int(li.get("quantity", 1))
            p = decimal.Decimal(str(li.get("price", "0")))
            li["price"] = money(p)
            t = p * q * rate
            li["tax_lines"] = [{"title": "State Tax", "price": money(t), "rate": 0.06}]
            line_total += p * q
            weight += int(li.get("grams", 0)) * q
        disc = sum((decimal.Decimal(d.get("amount", "0")) for d in o.get("discount_codes", [])), decimal.Decimal(0))
        disc = min(disc, line_total)
        sub = line_total - disc
        tax = (sub * rate).quantize(TWO, rounding=decimal.ROUND_HALF_UP)
        ship = decimal.Decimal("0.00") if line_total >= 50 else decimal.Decimal("4.99")
        if "shipping_lines" not in o:
            o["shipping_lines"] = [{"id": shop.new_id("shipping_line", rng), "code": "Standard",
                                    "price": money(ship), "source": "shopify", "title": "Standard Shipping",
                                    "discounted_price": money(ship), "tax_lines": []}]
        ship = sum((decimal.Decimal(s.get("price", "0")) for s in o["shipping_lines"]), decimal.Decimal(0))
        total = sub + tax + ship
        o["total_line_items_price"] = money(line_total)
        o["total_discounts"] = money(disc)
        o["subtotal_price"] = money(sub)
        o["total_tax"] = money(tax)
        o["total_price"] = money(total)
        o["total_shipping_price_set"] = {"shop_money": {"amount": money(ship), "currency_code": o["currency"]},
                                         "presentment_money": {"amount": money(ship),
                                                               "currency_code": o["currency"]}}
        o["total_price_set"] = {"shop_money": {"amount": money(total), "currency_code": o["currency"]},
                                "presentment_money": {"amount": money(total), "currency_code": o["currency"]}}
        o["current_subtotal_price"] = money(sub)
        o["current_total_discounts"] = money(disc)
        o["current_total_tax"] = money(tax)
        o["current_total_price"] = money(total)
        o["total_weight"] = weight
        o["tax_lines"] = [{"title": "State Tax", "price": money(tax), "rate": 0.06}] if tax else []

    def rollup_customers(self, shop):
        spent = {}
        for o in sorted(shop.orders.values(), key=lambda o: o["id"]):
            c = o.get("customer")
            if not c:
                continue
            s = spent.setdefault(c["id"], [0, decimal.Decimal(0), None, None])
            s[0] += 1
            if not o.get("cancelled_at"):
                s[1] += decimal.Decimal(o["total_price"])
            s[2], s[3] = o["id"], o["name"]
        for cid, (n, tot, last, lname) in spent.items():
            c = shop.customers.get(cid)
            if c:
                c.update({"orders_count": n, "total_spent": money(tot), "last_order_id": last,
                          "last_order_name": lname})

    def state(self):
        out = {"shops": {}, "tokens": dict(self.tokens), "config": dict(self.config), "stats": dict(self.stats)}
        now = self.now()
        for name, s in self.shops.items():
            out["shops"][name] = {
                "orders": [s.orders[k] for k in sorted(s.orders)],
                "products": [s.products[k] for k in sorted(s.products)],
                "customers": [s.customers[k] for k in sorted(s.customers)],
                "locations": [s.locations[k] for k in sorted(s.locations)],
                "inventory_levels": [s.levels[k] for k in sorted(s.levels)],
                "bucket": self.bucket_info(s, now)}
        return out

    def before_serve(self):
        if self.args.dump:
            st = self.state()
            data = {"shops": {n: {k: v for k, v in sd.items() if k != "bucket"} for n, sd in st["shops"].items()}}
            with open(self.args.dump, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, ensure_ascii=False, sort_keys=True)
                f.write("\n")
            return 0
        return None

    # ------------------------------------------------------------------ errors
    def err(self, status, errors, headers=None):
        return json_response(status, {"errors": errors}, headers)

    def fail(self, status, errors):
        raise HTTPError(self.err(status, errors))

    FAULT_TEXT = {400: "Bad Request", 401: "[API] Invalid API key or access token (unrecognized login or wrong password)",
                  402: "Unavailable Shop", 403: "Forbidden", 404: "Not Found", 406: "Not Acceptable",
                  423: "Locked", 429: "Exceeded 2 calls per second for api client. Reduce request rates to resume "
                                      "uninterrupted service.",
                  500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                  504: "Gateway Timeout"}

    def error_response(self, status, detail, code=None):
        return self.err(status, detail)

    def fault_response(self, status, fault):
        resp = self.err(status, self.FAULT_TEXT.get(status, "Error %d" % status))
        if status == 429:
            resp.headers["Retry-After"] = "%.1f" % self.config["retry_after"]
        return resp

    def not_found(self, req):
        return self.err(404, "Not Found")

    def bad_json(self, req, err):
        return self.err(400, "Bad Request")

    def check_auth(self, req):
        tok = req.header("x-shopify-access-token")
        shop = self.tokens.get(tok) if tok else None
        if shop is None or shop not in self.shops:
            return self.err(401, "[API] Invalid API key or access token (unrecognized login or wrong password)")
        host = (req.header("host") or "").split(":")[0]
        label = host.split(".")[0] if "." in host else ""
        if label in self.shops and label != shop:
            return self.err(401, "[API] Invalid API key or access token (unrecognized login or wrong password)")
        req.shop = self.shops[shop]
        return None

    # ------------------------------------------------------------------ versions and the bucket
    def resolve_version(self, v):
        if v == "unstable":
            return v
        if not re.match(r"^\d{4}-(01|04|07|10)$", v or ""):
            return None
        sup = self.config["versions"]
        if v in sup or not sup:
            return v
        return sup[0]    # unsupported (too old or not released): fall forward to the oldest supported

    def leak(self, shop, now):
        if shop.last is None or now < shop.last:
            shop.last = now
            return
        shop.level = max(0.0, shop.level - (now - shop.last) * self.config["leak"])
        shop.last = now

    def bucket_info(self, shop, now):
        self.leak(shop, now)
        return {"used": self.used(shop), "level": round(shop.level, 3), "size": self.config["bucket"],
                "leak": self.config["leak"]}

    def used(self, shop):
        return int(math.ceil(shop.level - 1e-9))

    def limit_header(self, shop):
        size = self.config["bucket"]
        return "%d/%s" % (min(self.used(shop), int(size)), int(size) if size == int(size) else size)

    def api(self, func, *extra):
        """Wrap an API route: version resolution, leaky bucket, common headers."""
        def handler(req):
            shop = req.shop
            now = self.now()
            self.stats["requests"] += 1
            self.leak(shop, now)
            size = self.config["bucket"]
            if shop.level + 1 > size + 1e-9 and self.config["throttle"]:
                self.stats["throttled"] += 1
                need = (shop.level + 1 - size) / max(self.config["leak"], 1e-9)
                retry = max(self.config["retry_after"], math.ceil(need * 10) / 10.0)
                resp = self.err(429, "Exceeded %s calls per second for api client. Reduce request rates to resume "
                                     "uninterrupted service." % fmt_num(self.config["leak"]))
                resp.headers["Retry-After"] = "%.1f" % retry
                ver = self.resolve_version(req.params.get("version"))
                if ver:
                    resp.headers["X-Shopify-API-Version"] = ver
            else:
                shop.level += 1
                ver = self.resolve_version(req.params.get("version"))
                if ver is None:
                    resp = self.err(404, "Not Found")
                else:
                    req.api_version = ver
                    try:
                        resp = func(req, shop, *extra)
                    except HTTPError as e:
                        resp = e.response
                    resp.headers["X-Shopify-API-Version"] = ver
            resp.headers["X-Shopify-Shop-Api-Call-Limit"] = self.limit_header(shop)
            resp.headers["X-Request-Id"] = hashlib.sha1(b"%d" % (self.stats["requests"] + id(req))).hexdigest()[:36]
            return resp
        return handler

    # ------------------------------------------------------------------ params
    def get_limit(self, req):
        raw = req.arg("limit")
        if raw is None or raw == "":
            return 50, False
        try:
            n = int(raw)
        except ValueError:
            self.fail(400, {"limit": "Invalid limit: %s" % raw})
        if n < 1:
            self.fail(400, {"limit": "limit must be greater than or equal to 1"})
        if n > 250:
            if self.config["limit_over_max"] == "clamp":
                return 250, True
            self.fail(400, {"limit": "limit must be less than or equal to 250"})
        return n, True

    def get_fields(self, req):
        f = req.arg("fields")
        if not f:
            return None
        return [x.strip() for x in f.split(",") if x.strip()]

    def parse_when(self, name, text):
        """ISO 8601 (with offset; without one it is shop-local time; a bare date is local midnight) -> us."""
        t = (text or "").strip()
        try:
            if re.match(r"^\d{4}-\d{2}-\d{2}$", t):
                t += "T00:00:00"
            try:
                return parse_time_us(t)
            except ValueError:
                a = abs(self.offset)
                return parse_time_us(t + "%s%02d:%02d" % ("-" if self.offset < 0 else "+", a // 60, a % 60))
        except ValueError:
            self.fail(400, {name: "%s is not a valid date: %s" % (name, text)})

    def parse_ids(self, name, text):
        out = []
        for x in (text or "").split(","):
            x = x.strip()
            if not x:
                continue
            if not x.isdigit():
                self.fail(400, {name: "%s must be a comma-separated list of integers" % name})
            out.append(int(x))
        return out

    # ------------------------------------------------------------------ filters
    TIME_FILTERS = {
        "orders": ("created_at", "updated_at", "processed_at"),
        "products": ("created_at", "updated_at", "published_at"),
        "customers": ("created_at", "updated_at"),
        "inventory_levels": ("updated_at",),
    }
    OTHER_FILTERS = {
        "orders": ("ids", "since_id", "status", "financial_status", "fulfillment_status", "attribution_app_id"),
        "products": ("ids", "since_id", "title", "vendor", "handle", "product_type", "status", "collection_id",
                     "published_status", "presentment_currencies"),
        "customers": ("ids", "since_id"),
        "inventory_levels": ("inventory_item_ids", "location_ids"),
    }

    def filter_names(self, res):
        names = set(self.OTHER_FILTERS[res])
        for f in self.TIME_FILTERS[res]:
            names.add(f + "_min")
            names.add(f + "_max")
        return names

    def read_filters(self, req, res):
        """The filter params of a first-page request (validated), as {name: text}."""
        names = self.filter_names(res)
        f = {}
        for k, v in req.query.items():
            if k in names:
                f[k] = v[-1]
        self.validate_filters(res, f)
        return f

    def validate_filters(self, res, f):
        for k, v in f.items():
            if k.endswith("_min") or k.endswith("_max"):
                self.parse_when(k, v)
            elif k in ("ids", "inventory_item_ids", "location_ids"):
                ids = self.parse_ids(k, v)
                if k != "ids" and len(ids) > 50:
                    self.fail(422, {k: "%s must contain at most 50 values" % k})
            elif k == "since_id":
                if not v.strip().isdigit():
                    self.fail(400, {k: "since_id must be an integer"})
        if res == "orders":
            st = f.get("status")
            if st is not None and st not in ORDER_STATUSES:
                self.fail(400, {"status": "status must be one of open, closed, cancelled, any"})
            fs = f.get("financial_status")
            if fs is not None and fs not in FIN_FILTERS:
                self.fail(400, {"financial_status": "is invalid"})
            fu = f.get("fulfillment_status")
            if fu is not None and fu not in FUL_FILTERS:
                self.fail(400, {"fulfillment_status": "is invalid"})
        if res == "products":
            st = f.get("status")
            if st is not None:
                bad = [s for s in st.split(",") if s.strip() not in PRODUCT_STATUSES]
                if bad:
                    self.fail(400, {"status": "status must be a comma-separated list of active, archived, draft"})
        if res == "inventory_levels" and not (f.get("inventory_item_ids") or f.get("location_ids")):
            self.fail(422, "inventory_item_ids or location_ids must be specified")

    def predicate(self, res, f):
        tests = []
        for field in self.TIME_FILTERS[res]:
            lo, hi = f.get(field + "_min"), f.get(field + "_max")
            if lo is not None:
                lo_us = self.parse_when(field + "_min", lo)
                tests.append(lambda o, fl=field, b=lo_us: o.get(fl) is not None and self.us(o[fl]) >= b)
            if hi is not None:
                hi_us = self.parse_when(field + "_max", hi)
                tests.append(lambda o, fl=field, b=hi_us: o.get(fl) is not None and self.us(o[fl]) <= b)
        if f.get("ids"):
            ids = set(self.parse_ids("ids", f["ids"]))
            tests.append(lambda o: o["id"] in ids)
        if f.get("since_id"):
            since = int(f["since_id"])
            tests.append(lambda o: o["id"] > since)
        if res == "orders":
            st = f.get("status", "open")
            if st == "open":
                tests.append(lambda o: not o.get("closed_at") and not o.get("cancelled_at"))
            elif st == "closed":
                tests.append(lambda o: bool(o.get("closed_at")))
            elif st == "cancelled":
                tests.append(lambda o: bool(o.get("cancelled_at")))
            fs = f.get("financial_status", "any")
            if fs == "unpaid":
                tests.append(lambda o: o.get("financial_status") in ("authorized", "pending", "partially_paid"))
            elif fs != "any":
                tests.append(lambda o, v=fs: o.get("financial_status") == v)
            fu = f.get("fulfillment_status", "any")
            if fu == "shipped":
                tests.append(lambda o: o.get("fulfillment_status") == "fulfilled")
            elif fu == "partial":
                tests.append(lambda o: o.get("fulfillment_status") == "partial")
            elif fu == "unshipped":
                tests.append(lambda o: o.get("fulfillment_status") is None)
            elif fu == "unfulfilled":
                tests.append(lambda o: o.get("fulfillment_status") in (None, "partial"))
        if res == "products":
            if f.get("status"):
                sts = {s.strip() for s in f["status"].split(",")}
                tests.append(lambda o: o.get("status") in sts)
            for k in ("title", "vendor", "product_type"):
                if f.get(k):
                    tests.append(lambda o, k=k, v=f[k]: o.get(k) == v)
            if f.get("handle"):
                hs = {h.strip() for h in f["handle"].split(",")}
                tests.append(lambda o: o.get("handle") in hs)
            ps = f.get("published_status", "any")
            if ps == "published":
                tests.append(lambda o: o.get("published_at") is not None)
            elif ps == "unpublished":
                tests.append(lambda o: o.get("published_at") is None)
        if res == "inventory_levels":
            if f.get("inventory_item_ids"):
                iids = set(self.parse_ids("inventory_item_ids", f["inventory_item_ids"]))
                tests.append(lambda o: o["inventory_item_id"] in iids)
            if f.get("location_ids"):
                lids = set(self.parse_ids("location_ids", f["location_ids"]))
                tests.append(lambda o: o["location_id"] in lids)
        return lambda o: all(t(o) for t in tests)

    _us_cache = {}

    def us(self, s):
        v = self._us_cache.get(s)
        if v is None:
            v = parse_time_us(s)
            if len(self._us_cache) > 100000:
                self._us_cache.clear()
            self._us_cache[s] = v
        return v

    # ------------------------------------------------------------------ page_info
    def make_page_info(self, shop, res, filters, direction, key):
        payload = json.dumps({"shop": shop.name, "res": res, "f": filters, "dir": direction, "last": key},
                             sort_keys=True, separators=(",", ":")).encode()
        sig = hmac.new(self.secret, payload, hashlib.sha256).digest()[:10]
        return b64url(payload + sig)

    def read_page_info(self, shop, res, text):
        bad = {"page_info": "Invalid value."}
        try:
            raw = b64url_decode(text)
            payload, sig = raw[:-10], raw[-10:]
            if len(raw) <= 10 or not hmac.compare_digest(sig, hmac.new(self.secret, payload, hashlib.sha256).digest()[:10]):
                raise ValueError("signature")
            d = json.loads(payload)
        except (ValueError, TypeError, UnicodeDecodeError):
            self.fail(400, bad)
        if d.get("shop") != shop.name or d.get("res") != res or d.get("dir") not in ("next", "prev"):
            self.fail(400, bad)
        return d

    def link_url(self, req, limit, page_info, fields):
        host = req.header("host") or "127.0.0.1"
        scheme = req.header("x-forwarded-proto") or "http"
        q = [("limit", str(limit)), ("page_info", page_info)]
        if fields:
            q.append(("fields", ",".join(fields)))
        return "%s://%s%s?%s" % (scheme, host, req.path, urllib.parse.urlencode(q))

    def paged(self, req, shop, res, rows, keyfn):
        """Common list logic: filters or page_info, keyset paging, Link header.

        rows: every object of the resource; keyfn(obj) -> sort key (list).
        Returns (page objects, headers)."""
        limit, _ = self.get_limit(req)
        fields = self.get_fields(req)
        pi = req.query.get("page_info")
        if pi is not None:
            extra = sorted(k for k in req.query if k not in ("page_info", "limit", "fields"))
            if extra:
                self.fail(400, {"page_info": "%s cannot be passed when page_info is present."
                                             % ", ".join(extra)})
            d = self.read_page_info(shop, res, pi[-1])
            filters, direction, last = d["f"], d["dir"], d["last"]
            self.validate_filters(res, filters)
        else:
            filters, direction, last = self.read_filters(req, res), "next", None
        pred = self.predicate(res, filters)
        keyed = sorted(((keyfn(o), o) for o in rows if pred(o)), key=lambda kv: kv[0])
        keys = [k for k, _ in keyed]
        if last is None:
            start = 0
        elif direction == "next":
            start = bisect_right(keys, last)
        else:
            end = bisect_left(keys, last)
            start = max(0, end - limit)
        if direction == "prev" and last is not None:
            chunk = keyed[start:end]
            has_next = end < len(keyed)
        else:
            chunk = keyed[start:start + limit]
            has_next = start + limit < len(keyed)
        has_prev = start > 0
        links = []
        if chunk and has_prev:
            links.append('<%s>; rel="previous"' % self.link_url(
                req, limit, self.make_page_info(shop, res, filters, "prev", chunk[0][0]), fields))
        if chunk and has_next:
            links.append('<%s>; rel="next"' % self.link_url(
                req, limit, self.make_page_info(shop, res, filters, "next", chunk[-1][0]), fields))
        headers = {"Link": ", ".join(links)} if links else {}
        return [self.project(o, fields) for _, o in chunk], headers

    @staticmethod
    def project(o, fields):
        if not fields:
            return o
        return {k: o[k] for k in fields if k in o}

    # ------------------------------------------------------------------ API routes
    def store(self, shop, res):
        return {"orders": shop.orders, "products": shop.products, "customers": shop.customers}[res]

    def list_resource(self, req, shop, res):
        objs, headers = self.paged(req, shop, res, self.store(shop, res).values(), lambda o: [o["id"]])
        return json_response(200, {res: objs}, headers)

    def count_resource(self, req, shop, res):
        f = self.read_filters(req, res)
        pred = self.predicate(res, f)
        return json_response(200, {"count": sum(1 for o in self.store(shop, res).values() if pred(o))})

    def get_resource(self, req, shop, res):
        o = self.store(shop, res).get(int(req.params["id"]))
        if o is None:
            self.fail(404, "Not Found")
        return json_response(200, {res[:-1]: self.project(o, self.get_fields(req))})

    def list_variants(self, req, shop):
        p = shop.products.get(int(req.params["id"]))
        if p is None:
            self.fail(404, "Not Found")
        return json_response(200, {"variants": p.get("variants", [])})

    def list_locations(self, req, shop):
        # Locations are not paginated (the endpoint has no limit parameter).
        locs = [shop.locations[k] for k in sorted(shop.locations)]
        return json_response(200, {"locations": locs})

    def count_locations(self, req, shop):
        return json_response(200, {"count": len(shop.locations)})

    def get_location(self, req, shop):
        l = shop.locations.get(int(req.params["id"]))
        if l is None:
            self.fail(404, "Not Found")
        return json_response(200, {"location": l})

    def level_key(self, lv):
        return [lv["inventory_item_id"], lv["location_id"]]

    def list_levels(self, req, shop):
        objs, headers = self.paged(req, shop, "inventory_levels", shop.levels.values(), self.level_key)
        return json_response(200, {"inventory_levels": objs}, headers)

    def location_levels(self, req, shop):
        lid = int(req.params["lid"])
        if lid not in shop.locations:
            self.fail(404, "Not Found")
        rows = [lv for lv in shop.levels.values() if lv["location_id"] == lid]
        if "page_info" not in req.query:
            req.query = dict(req.query)
            req.query["location_ids"] = [str(lid)]
        objs, headers = self.paged(req, shop, "inventory_levels", rows, self.level_key)
        return json_response(200, {"inventory_levels": objs}, headers)

    def get_shop(self, req, shop):
        return json_response(200, {"shop": {"id": ID_BASE["location"] - 1 - shop.index, "name": shop.name,
                                            "myshopify_domain": "%s.myshopify.com" % shop.name,
                                            "currency": self.args.currency,
                                            "iana_timezone": "America/New_York"}})

    # ------------------------------------------------------------------ control
    def cfail(self, msg, status=400):
        raise HTTPError(json_response(status, {"error": msg}))

    def ctl_body(self, req):
        b = req.json()
        if b is None:
            return {}
        if not isinstance(b, dict):
            self.cfail("expected a JSON object")
        return b

    def ctl_shop(self, b):
        name = b.get("shop") or next(iter(self.shops))
        if name not in self.shops:
            self.cfail("unknown shop %r" % name)
        return self.shops[name]

    def ctl_get_tokens(self, req):
        return json_response(200, {"tokens": dict(self.tokens)})

    def ctl_tokens(self, req):
        b = self.ctl_body(req)
        first = next(iter(self.shops))

        def as_map(v):
            if isinstance(v, list):
                return {t: first for t in v}
            if isinstance(v, dict):
                return v
            self.cfail("tokens: a list of strings or an object {token: shop}")

        if "tokens" in b:
            self.tokens = {}
            self.tokens.update(as_map(b["tokens"]))
        if "add" in b:
            self.tokens.update(as_map(b["add"]))
        for t in b.get("remove") or []:
            self.tokens.pop(t, None)
        for t, s in self.tokens.items():
            if s not in self.shops:
                self.cfail("token %s: unknown shop %s" % (t, s))
        return json_response(200, {"tokens": dict(self.tokens)})

    def specs(self, b, one, many):
        items = b.get(many) if b.get(many) is not None else ([b[one]] if b.get(one) is not None else [])
        if not isinstance(items, list) or not items or not all(isinstance(x, dict) for x in items):
            self.cfail("%s (object) or %s (list of objects) required" % (one, many))
        return copy.deepcopy(items)

    def ctl_order(self, req):
        b = self.ctl_body(req)
        shop = self.ctl_shop(b)
        now = self.now_ts()
        out = []
        for spec in self.specs(b, "order", "orders"):
            oid = spec.pop("id", None)
            cur = shop.orders.get(oid) if oid is not None else None
            if oid is not None and cur is None and not b.get("create", True):
                self.cfail("no order %s" % oid, 404)
            cust = None
            cid = spec.pop("customer_id", None)
            if cid is not None:
                cust = shop.customers.get(cid)
                if cust is None:
                    self.cfail("no customer %s" % cid)
            lines = spec.pop("line_items", None)
            if cur is not None:
                o = copy.deepcopy(cur)
                spec.pop("created_at", None)
                deep_merge(o, spec)
                if cust is None and o.get("customer"):
                    cust = shop.customers.get(o["customer"]["id"], o["customer"])
            else:
                o = spec
                o["id"] = oid if oid is not None else shop.new_id("order")
                shop.note_id("order", o["id"])
                o.setdefault("created_at", now)
                o["number"] = max([x.get("number", 0) for x in shop.orders.values()] + [0]) + 1
                if lines is None:
                    lines = [{"variant_id": next(iter(shop.products.values()))["variants"][0]["id"], "quantity": 1}] \
                        if shop.products else []
            if lines is not None:
                o["line_items"] = [self.ctl_line(shop, li) for li in lines]
            st = o.pop("status", None)      # convenience: "closed" / "cancelled" / "open"
            if st == "closed":
                o["closed_at"] = o.get("closed_at") or now
            elif st == "cancelled":
                o["cancelled_at"] = o.get("cancelled_at") or now
                o["closed_at"] = o.get("closed_at") or now
                o["cancel_reason"] = o.get("cancel_reason") or "other"
            elif st == "open":
                o["closed_at"] = o["cancelled_at"] = None
            o["updated_at"] = now
            if lines is not None:
                o.pop("shipping_lines", None)      # recomputed from the new lines
            self.fill_order(shop, o, cust)
            shop.orders[o["id"]] = o
            out.append(o)
        self.rollup_customers(shop)
        return json_response(200, {"orders": out})

    def ctl_line(self, shop, li):
        if not isinstance(li, dict):
            self.cfail("line_items[] must be objects")
        li = dict(li)
        vid = li.get("variant_id")
        if vid is not None:
            for p in shop.products.values():
                for v in p.get("variants", []):
                    if v["id"] == vid:
                        base = self.make_line(shop, p, v, int(li.get("quantity", 1)))
                        if li.get("id"):
                            base["id"] = li["id"]
                        base.update({k: x for k, x in li.items() if k != "id"})
                        return base
            self.cfail("no variant %s" % vid)
        li.setdefault("id", shop.new_id("line_item"))
        li.setdefault("title", "Custom item")
        li.setdefault("quantity", 1)
        li.setdefault("price", "0.00")
        li.setdefault("variant_id", None)
        li.setdefault("product_id", None)
        return li

    def ctl_product(self, req):
        b = self.ctl_body(req)
        shop = self.ctl_shop(b)
        now = self.now_ts()
        out = []
        for spec in self.specs(b, "product", "products"):
            pid = spec.pop("id", None)
            cur = shop.products.get(pid) if pid is not None else None
            variants = spec.pop("variants", None)
            if spec.get("status") is not None and spec["status"] not in PRODUCT_STATUSES:
                self.cfail("bad product status %r" % spec["status"])
            if cur is not None:
                p = copy.deepcopy(cur)
                spec.pop("created_at", None)
                deep_merge(p, spec)
            else:
                p = spec
                p["id"] = pid if pid is not None else shop.new_id("product")
                shop.note_id("product", p["id"])
                p.setdefault("title", "New product")
                p.setdefault("body_html", "")
                p.setdefault("vendor", "Etl Goods")
                p.setdefault("product_type", "")
                p.setdefault("created_at", now)
                p.setdefault("handle", re.sub(r"[^a-z0-9]+", "-", p["title"].lower()).strip("-") + "-%d" % (p["id"] % 100000))
                p.setdefault("published_at", now)
                p.setdefault("template_suffix", None)
                p.setdefault("published_scope", "web")
                p.setdefault("tags", "")
                p.setdefault("status", "active")
                p.setdefault("options", [{"id": p["id"] + 1, "product_id": p["id"], "name": "Title", "position": 1,
                                          "values": ["Default Title"]}])
                p.setdefault("images", [])
                p.setdefault("image", None)
                p["variants"] = []
                if variants is None:
                    variants = [{"title": "Default Title", "price": "0.00"}]
            p["admin_graphql_api_id"] = "gid://shopify/Product/%d" % p["id"]
            p["updated_at"] = now
            if variants is not None:
                old = {v["id"]: v for v in p.get("variants", [])}
                newv = []
                for k, vs in enumerate(variants):
                    vs = dict(vs)
                    vid = vs.pop("id", None)
                    if vid in old:
                        v = deep_merge(copy.deepcopy(old[vid]), vs)
                    else:
                        vid = vid if vid is not None else shop.new_id("variant")
                        shop.note_id("variant", vid)
                        iid = shop.new_id("inventory_item")
                        v = {"id": vid, "product_id": p["id"], "title": vs.get("title", "Default Title"),
                             "price": "0.00", "sku": "", "position": k + 1, "inventory_policy": "deny",
                             "compare_at_price": None, "fulfillment_service": "manual",
                             "inventory_management": "shopify", "option1": vs.get("title", "Default Title"),
                             "option2": None, "option3": None, "created_at": now, "taxable": True, "barcode": None,
                             "grams": 0, "weight": 0.0, "weight_unit": "kg", "inventory_item_id": iid,
                             "inventory_quantity": 0, "old_inventory_quantity": 0, "requires_shipping": True,
                             "admin_graphql_api_id": "gid://shopify/ProductVariant/%d" % vid}
                        deep_merge(v, vs)
                    if "price" in vs:
                        v["price"] = money(decimal.Decimal(str(vs["price"])))
                    v["position"] = k + 1
                    v["updated_at"] = now
                    newv.append(v)
                for vid in set(old) - {v["id"] for v in newv}:
                    iid = old[vid].get("inventory_item_id")
                    for key in [k for k in shop.levels if k[0] == iid]:
                        del shop.levels[key]
                p["variants"] = newv
            shop.products[p["id"]] = p
            out.append(p)
        return json_response(200, {"products": out})

    def ctl_customer(self, req):
        b = self.ctl_body(req)
        shop = self.ctl_shop(b)
        now = self.now_ts()
        out = []
        for spec in self.specs(b, "customer", "customers"):
            cid = spec.pop("id", None)
            cur = shop.customers.get(cid) if cid is not None else None
            if cur is not None:
                c = copy.deepcopy(cur)
                spec.pop("created_at", None)
                deep_merge(c, spec)
            else:
                c = {"id": cid if cid is not None else shop.new_id("customer"), "email": None,
                     "accepts_marketing": False, "created_at": now, "first_name": None, "last_name": None,
                     "orders_count": 0, "state": "disabled", "total_spent": "0.00", "last_order_id": None,
                     "note": None, "verified_email": False, "multipass_identifier": None, "tax_exempt": False,
                     "tags": "", "last_order_name": None, "currency": self.args.currency, "phone": None,
                     "addresses": [], "default_address": None}
                shop.note_id("customer", c["id"])
                deep_merge(c, spec)
            c["admin_graphql_api_id"] = "gid://shopify/Customer/%d" % c["id"]
            c["updated_at"] = now
            shop.customers[c["id"]] = c
            out.append(c)
        return json_response(200, {"customers": out})

    def ctl_inventory(self, req):
        b = self.ctl_body(req)
        shop = self.ctl_shop(b)
        now = self.now_ts()
        out = []
        items = b.get("levels") if b.get("levels") is not None else ([b] if "inventory_item_id" in b else None)
        if not isinstance(items, list) or not items:
            self.cfail("levels: a list of {inventory_item_id, location_id, available}")
        known_items = {v.get("inventory_item_id") for p in shop.products.values() for v in p.get("variants", [])}
        for lv in items:
            iid, lid = lv.get("inventory_item_id"), lv.get("location_id")
            if iid not in known_items:
                self.cfail("unknown inventory_item_id %r" % iid)
            if lid not in shop.locations:
                self.cfail("unknown location_id %r" % lid)
            key = (iid, lid)
            cur = shop.levels.get(key) or {
                "inventory_item_id": iid, "location_id": lid, "available": 0,
                "admin_graphql_api_id": "gid://shopify/InventoryLevel/%d?inventory_item_id=%d" % (lid, iid)}
            if "available" in lv:
                cur["available"] = lv["available"]
            if "adjust" in lv:
                cur["available"] = (cur.get("available") or 0) + int(lv["adjust"])
            cur["updated_at"] = now
            shop.levels[key] = cur
            out.append(cur)
        return json_response(200, {"inventory_levels": out})

    def ctl_delete(self, req):
        b = self.ctl_body(req)
        shop = self.ctl_shop(b)
        gone = {"products": [], "orders": [], "customers": []}
        for res in gone:
            for i in b.get(res) or []:
                store = self.store(shop, res)
                if i not in store:
                    self.cfail("no %s %s" % (res[:-1], i), 404)
                obj = store.pop(i)
                gone[res].append(i)
                if res == "products":      # its inventory items and levels go with it
                    iids = {v.get("inventory_item_id") for v in obj.get("variants", [])}
                    for key in [k for k in shop.levels if k[0] in iids]:
                        del shop.levels[key]
        if not any(gone.values()):
            self.cfail("give products, orders and/or customers: lists of ids")
        return json_response(200, {"deleted": gone})

    def ctl_config(self, req):
        b = self.ctl_body(req)
        for k, v in b.items():
            if k not in self.config:
                self.cfail("unknown config key %r" % k)
            if k == "versions":
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    self.cfail("versions: a list of YYYY-MM strings")
                self.config[k] = sorted(v)
            elif k == "throttle":
                self.config[k] = bool(v)
            elif k == "limit_over_max":
                if v not in ("error", "clamp"):
                    self.cfail("limit_over_max: error or clamp")
                self.config[k] = v
            else:
                self.config[k] = float(v)
        return json_response(200, {"config": dict(self.config)})

    def ctl_get_bucket(self, req):
        now = self.now()
        return json_response(200, {"shops": {n: self.bucket_info(s, now) for n, s in self.shops.items()}})

    def ctl_bucket(self, req):
        b = self.ctl_body(req)
        shop = self.ctl_shop(b)
        now = self.now()
        self.leak(shop, now)
        if "used" in b:
            shop.level = max(0.0, float(b["used"]))
        return json_response(200, dict(self.bucket_info(shop, now), shop=shop.name))


def fmt_num(x):
    return str(int(x)) if float(x) == int(x) else str(x)


def bisect_right(keys, k):
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[mid] <= k:
            lo = mid + 1
        else:
            hi = mid
    return lo


def bisect_left(keys, k):
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[mid] < k:
            lo = mid + 1
        else:
            hi = mid
    return lo


if __name__ == "__main__":
    sys.exit(main(ShopifyMock))

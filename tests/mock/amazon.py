#!/usr/bin/env python3
"""Mock of Login with Amazon + the Selling Partner API subset used by the `amazon` plugin.

Reproduces /work/shared/specs/README.md §2 and the models in shared/specs/amazon/
(ordersV0.json, fbaInventory.json, catalogItems_2022-04-01.json): the LWA
refresh-token exchange, `x-amz-access-token`, getOrders / getOrder /
getOrderItems with NextToken, getInventorySummaries with an expiring
nextToken, searchCatalogItems / getCatalogItem with pageToken, per-operation
token buckets and the SP-API error envelope. See tests/mock/README.md.

    python3 tests/mock/amazon.py --port 0 [--seed 1 --orders 40 --rate-scale 100 ...]
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
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mockbase import (Mock, HTTPError, json_response, parse_time_us, iso_s,  # noqa: E402
                      b64url, b64url_decode, deep_merge, main)

# operation -> (rate per second, burst): the usage-plan tables of the models
OPS = {"getOrders": (0.0167, 20), "getOrder": (0.5, 30), "getOrderItems": (0.5, 30),
       "getInventorySummaries": (2.0, 2), "searchCatalogItems": (2.0, 2), "getCatalogItem": (2.0, 2)}

MARKETPLACES = {  # id -> (currency, sales channel, country)
    "ATVPDKIKX0DER": ("USD", "Amazon.com", "US"), "A2EUQ1WTGCTBG2": ("CAD", "Amazon.ca", "CA"),
    "A1AM78C64UM0Y8": ("MXN", "Amazon.com.mx", "MX"), "A2Q3Y263D00KWC": ("BRL", "Amazon.com.br", "BR"),
    "A1F83G8C2ARO7P": ("GBP", "Amazon.co.uk", "GB"), "A1PA6795UKMFR9": ("EUR", "Amazon.de", "DE"),
    "A13V1IB3VIYZZH": ("EUR", "Amazon.fr", "FR"), "APJ6JRA9NG5V4": ("EUR", "Amazon.it", "IT"),
    "A1RKKUPIHCS9HS": ("EUR", "Amazon.es", "ES"), "A1VC38T7YXB528": ("JPY", "Amazon.co.jp", "JP"),
    "A39IBJ37TRP1C6": ("AUD", "Amazon.com.au", "AU"), "A21TJRUUN4KGV": ("INR", "Amazon.in", "IN"),
}
ORDER_STATUSES = ["PendingAvailability", "Pending", "Unshipped", "PartiallyShipped", "Shipped", "Canceled",
                  "Unfulfillable", "InvoiceUnconfirmed"]
CHANNELS = ["AFN", "MFN"]
PAYMENT_METHODS = ["COD", "CVS", "Other"]
INCLUDED_DATA = ["attributes", "classifications", "dimensions", "identifiers", "images", "productTypes",
                 "relationships", "salesRanks", "summaries", "vendorDetails"]
IDENTIFIER_TYPES = ["ASIN", "EAN", "GTIN", "ISBN", "JAN", "MINSAN", "SKU", "UPC"]

BRANDS = ["SAMSUNG", "Etl Goods", "Northwind", "Acme", "Café Crème"]
ADJ = ["Classic", "Organic", "Vintage", "Deluxe", "Everyday", "Mini", "Handmade", "Nordic", "Rustic", "Smart"]
NOUN = [("Mug", "DRINKING_CUP", "Kitchen"), ("Hoodie", "SHIRT", "Apparel"), ("Tote Bag", "HANDBAG", "Luggage"),
        ("Candle", "CANDLE", "Home"), ("Notebook", "NOTEBOOK", "Office Products"),
        ("Teapot", "TEAPOT", "Kitchen"), ("Card Book", "BOOK", "Books"), ("QLED TV", "TELEVISION", "Electronics"),
        ("Water Bottle", "BOTTLE", "Sports"), ("Trail Mix", "GROCERY", "Grocery")]
COLORS = ["Black", "White", "Red", "Green", "Blue"]
SIZES = ["Small", "Medium", "Large", "82-Inch", "One Size"]
CITIES = [("CANTON", "MI", "48817"), ("SEATTLE", "WA", "98121"), ("AUSTIN", "TX", "78701"),
          ("BROOKLYN", "NY", "11201"), ("PORTLAND", "OR", "97201")]

TWO = decimal.Decimal("0.01")
ALNUM = string.ascii_uppercase + string.digits


def money(d):
    return str(decimal.Decimal(d).quantize(TWO, rounding=decimal.ROUND_HALF_UP))


def parse_amz_time(text):
    """ISO 8601 as SP-API takes it: zone optional (UTC), fraction optional, or a bare date -> us."""
    t = (text or "").strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}$", t):
        t += "T00:00:00Z"
    return parse_time_us(t, require_offset=False)


class AmazonMock(Mock):
    name = "amazon"

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--client-id", default="amzn1.application-oa2-client.test")
        p.add_argument("--client-secret", default="test-secret")
        p.add_argument("--refresh-token", action="append",
                       help="a valid LWA refresh token (repeatable); default Atzr|test-refresh")
        p.add_argument("--token-ttl", type=float, default=3600, help="access token lifetime (s, mock clock)")
        p.add_argument("--next-token-ttl", type=float, default=30, help="FBA inventory nextToken lifetime (s)")
        p.add_argument("--marketplaces", default="ATVPDKIKX0DER",
                       help="comma-separated marketplace ids the seller sells in")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--orders", type=int, default=40)
        p.add_argument("--catalog", type=int, default=60)
        p.add_argument("--inventory", type=int, default=35)
        p.add_argument("--base-time", default="2024-05-01T14:00:00Z",
                       help="generated data is stamped from this time on (a 30-day window)")
        p.add_argument("--rate-scale", type=float, default=1.0,
                       help="multiply every operation's rate (e.g. 100 for fast tests); burst is unchanged")
        p.add_argument("--items-page-size", type=int, default=100, help="order items per getOrderItems page")
        p.add_argument("--inventory-page-size", type=int, default=50, help="summaries per inventory page")
        p.add_argument("--catalog-max-results", type=int, default=1000, help="results reachable by paging")
        p.add_argument("--lenient-next-token", action="store_true",
                       help="getOrders: accept NextToken with the filters left out (only MarketplaceIds)")
        p.add_argument("--no-throttle", action="store_true", help="never answer 429 QuotaExceeded")
        p.add_argument("--data", help="load data from this JSON file instead of generating it")
        p.add_argument("--dump", help="write the generated data to this JSON file and exit")

    def setup_routes(self):
        self.secret = hashlib.sha256(b"amazon-mock-token-%d" % self.args.seed).digest()
        r = self.route
        r("POST", r"/auth/o2/token", self.lwa_token, auth=False)
        r("GET", r"/orders/v0/orders", self.op("getOrders", self.get_orders))
        r("GET", r"/orders/v0/orders/(?P<id>[^/]+)", self.op("getOrder", self.get_order))
        r("GET", r"/orders/v0/orders/(?P<id>[^/]+)/orderItems", self.op("getOrderItems", self.get_order_items))
        r("GET", r"/fba/inventory/v1/summaries", self.op("getInventorySummaries", self.get_inventory))
        r("GET", r"/catalog/2022-04-01/items", self.op("searchCatalogItems", self.search_catalog))
        r("GET", r"/catalog/2022-04-01/items/(?P<asin>[^/]+)", self.op("getCatalogItem", self.get_catalog_item))
        c = self.control
        c("POST", "expire", self.ctl_expire)
        c("POST", "order", self.ctl_order)
        c("POST", "inventory", self.ctl_inventory)
        c("POST", "catalog", self.ctl_catalog)
        c("POST", "credentials", self.ctl_credentials)
        c("POST", "config", self.ctl_config)
        c("GET", "buckets", self.ctl_get_buckets)
        c("POST", "buckets", self.ctl_buckets)

    # ------------------------------------------------------------------ data
    def load(self):
        a = self.args
        self.marketplaces = [m.strip() for m in a.marketplaces.split(",") if m.strip()]
        for m in self.marketplaces:
            if m not in MARKETPLACES:
                raise SystemExit("unknown marketplace id %s (known: %s)" % (m, ", ".join(sorted(MARKETPLACES))))
        self.client_id = a.client_id
        self.client_secret = a.client_secret
        self.refresh_tokens = set(a.refresh_token or ["Atzr|test-refresh"])
        self.config = {"rate_scale": a.rate_scale, "rates": {}, "token_ttl": a.token_ttl,
                       "next_token_ttl": a.next_token_ttl, "items_page_size": a.items_page_size,
                       "inventory_page_size": a.inventory_page_size, "catalog_max_results": a.catalog_max_results,
                       "lenient_next_token": a.lenient_next_token, "throttle": not a.no_throttle}
        self.access = {}      # access token -> {"exp": epoch, "refresh_token": ..., "issued": epoch}
        self.buckets = {}     # (operation, refresh token) -> [tokens, last]
        self.stats = {"token_requests": 0, "token_exchanges": 0, "token_failures": 0,
                      "calls": {op: 0 for op in OPS}, "throttled": {op: 0 for op in OPS}}
        self.orders = {}      # AmazonOrderId -> Order (API shape)
        self.items = {}       # AmazonOrderId -> [OrderItem]
        self.inventory = {}   # sellerSku -> InventorySummary (with inventoryDetails)
        self.catalog = {}     # asin -> Item (every dataset, all marketplaces)
        self.rng = random.Random(a.seed * 31 + 7)
        if a.data:
            with open(a.data, encoding="utf-8") as f:
                self.load_data(json.load(f))
        else:
            self.generate(random.Random(a.seed))

    def load_data(self, d):
        if d.get("marketplaces"):
            self.marketplaces = list(d["marketplaces"])
        for it in d.get("catalog", []):
            self.catalog[it["asin"]] = copy.deepcopy(it)
        for s in d.get("inventory", []):
            self.inventory[s["sellerSku"]] = copy.deepcopy(s)
        for o in d.get("orders", []):
            o = copy.deepcopy(o)
            self.items[o["AmazonOrderId"]] = o.pop("OrderItems", [])
            self.orders[o["AmazonOrderId"]] = o

    def new_asin(self, rng):
        while True:
            a = "B0" + "".join(rng.choice(ALNUM) for _ in range(8))
            if a not in self.catalog:
                return a

    def make_catalog_item(self, asin, name, brand, ptype, group, color, size, rng):
        ean = "".join(rng.choice(string.digits) for _ in range(13))
        upc = ean[1:]
        out = {"asin": asin, "summaries": [], "identifiers": [], "productTypes": [], "salesRanks": [],
               "images": [], "attributes": {}, "classifications": []}
        cls_id = str(int(hashlib.md5(group.encode()).hexdigest()[:8], 16) % 90000000 + 100000)
        for m in self.marketplaces:
            out["summaries"].append({
                "marketplaceId": m, "brand": brand, "browseClassification": {"displayName": group,
                                                                             "classificationId": cls_id},
                "color": color, "itemClassification": "BASE_PRODUCT", "itemName": name, "manufacturer": brand,
                "modelNumber": asin[2:], "packageQuantity": 1, "partNumber": asin[2:], "size": size,
                "websiteDisplayGroup": group.lower().replace(" ", "_") + "_display_on_website",
                "websiteDisplayGroupName": group})
            out["identifiers"].append({"marketplaceId": m, "identifiers": [
                {"identifier": ean, "identifierType": "EAN"}, {"identifier": "0" + ean, "identifierType": "GTIN"},
                {"identifier": upc, "identifierType": "UPC"}]})
            out["productTypes"].append({"marketplaceId": m, "productType": ptype})
            out["salesRanks"].append({"marketplaceId": m, "displayGroupRanks": [
                {"websiteDisplayGroup": group.lower().replace(" ", "_") + "_display_on_website", "title": group,
                 "link": "http://www.amazon.com/gp/bestsellers/%s" % group.lower().replace(" ", "-"),
                 "rank": rng.randint(1, 200000)}]})
            out["images"].append({"marketplaceId": m, "images": [
                {"variant": "MAIN", "link": "https://m.media-amazon.com/images/I/%s.jpg" % asin,
                 "height": 500, "width": 500}]})
            out["classifications"].append({"marketplaceId": m, "classifications": [
                {"displayName": group, "classificationId": cls_id}]})
            for k, v in (("item_name", name), ("brand", brand), ("color", color), ("size", size)):
                out["attributes"].setdefault(k, []).append({"value": v, "language_tag": "en_US",
                                                            "marketplace_id": m})
        return out

    def generate(self, rng):
        a = self.args
        base = parse_amz_time(a.base_time) / 1e6
        span = 30 * 86400

        # catalog
        asins = []
        for i in range(a.catalog):
            noun, ptype, group = NOUN[i % len(NOUN)]
            brand = BRANDS[(i // len(NOUN)) % len(BRANDS)] if i % 7 else rng.choice(BRANDS)
            color, size = rng.choice(COLORS), rng.choice(SIZES)
            name = "%s %s %s, %s, %s" % (brand, rng.choice(ADJ), noun, color, size)
            asin = self.new_asin(rng)
            self.catalog[asin] = self.make_catalog_item(asin, name, brand, ptype, group, color, size, rng)
            asins.append(asin)

        # FBA inventory: one SKU per catalog item, for the first --inventory items.
        # A few SKUs need URL-encoding (space, slash, plus) as the spec warns.
        for i, asin in enumerate(asins[:a.inventory]):
            noun = NOUN[i % len(NOUN)][0].upper().replace(" ", "")
            if i == 3:
                sku = "ETL %s/%03d+blue" % (noun, i)
            elif i == 5:
                sku = "etl-%s-%03d#b" % (noun.lower(), i)
            else:
                sku = "ETL-%s-%03d" % (noun, i)
            t = base + rng.randint(0, span)
            self.inventory[sku] = self.make_summary(sku, asin, self.item_name(asin), t, rng)

        # orders (+ items)
        skus = list(self.inventory)
        weights = [("Shipped", 50), ("Unshipped", 15), ("PartiallyShipped", 5), ("Pending", 12),
                   ("Canceled", 10), ("InvoiceUnconfirmed", 3), ("Unfulfillable", 2), ("PendingAvailability", 3)]
        population = [s for s, w in weights for _ in range(w)]
        for i in range(a.orders if asins else 0):
            purchase = int(base + span * i / max(1, a.orders) + rng.randint(0, 3600))
            status = rng.choice(population)
            m = self.marketplaces[i % len(self.marketplaces)]
            nitems = 7 if i == 2 else rng.randint(1, 3)
            lines = []
            afn = rng.random() < 0.6 and skus
            for k in range(nitems):
                if afn:
                    sku = rng.choice(skus)
                    asin = self.inventory[sku]["asin"]
                else:
                    asin = rng.choice(asins)
                    sku = "MFN-%s" % asin
                lines.append({"ASIN": asin, "SellerSKU": sku, "QuantityOrdered": rng.randint(1, 3),
                              "unit": decimal.Decimal(rng.randint(5, 150)) - decimal.Decimal("0.01")})
            o = {"AmazonOrderId": self.new_order_id(rng), "PurchaseDate": iso_s(purchase),
                 "OrderStatus": status, "FulfillmentChannel": "AFN" if afn else "MFN", "MarketplaceId": m}
            last = purchase + rng.randint(60, 3600)
            if status in ("Shipped", "Canceled", "PartiallyShipped", "Unfulfillable"):
                last = purchase + rng.randint(3600, 86400 * 4)
            if rng.random() < 0.2:
                last += rng.randint(86400, 86400 * 10)        # touched again later
            o["LastUpdateDate"] = iso_s(last)
            self.orders[o["AmazonOrderId"]] = o
            self.items[o["AmazonOrderId"]] = [self.make_item(o, ln, rng) for ln in lines]
            self.fill_order(o, rng)

    def item_name(self, asin):
        it = self.catalog.get(asin) or {}
        s = (it.get("summaries") or [{}])[0]
        return s.get("itemName", "Item %s" % asin)

    def make_summary(self, sku, asin, name, t, rng):
        ful = rng.randint(0, 80) if rng.random() > 0.1 else 0
        inbound = [rng.choice([0, 0, rng.randint(1, 30)]) for _ in range(3)]
        res = [rng.randint(0, 3), 0, rng.randint(0, 2)]
        unf = [rng.choice([0, 0, 1]), rng.choice([0, 1]), 0, 0, rng.choice([0, 0, 2]), 0]
        rsch = rng.choice([0, 0, 1])
        s = {"asin": asin, "fnSku": "X00" + "".join(rng.choice(ALNUM) for _ in range(7)), "sellerSku": sku,
             "condition": "NewItem", "lastUpdatedTime": iso_s(t), "productName": name, "stores": [],
             "inventoryDetails": {
                 "fulfillableQuantity": ful, "inboundWorkingQuantity": inbound[0],
                 "inboundShippedQuantity": inbound[1], "inboundReceivingQuantity": inbound[2],
                 "reservedQuantity": {"totalReservedQuantity": sum(res), "pendingCustomerOrderQuantity": res[0],
                                      "pendingTransshipmentQuantity": res[1], "fcProcessingQuantity": res[2]},
                 "researchingQuantity": {"totalResearchingQuantity": rsch, "researchingQuantityBreakdown": [
                     {"name": "researchingQuantityInShortTerm", "quantity": rsch},
                     {"name": "researchingQuantityInMidTerm", "quantity": 0},
                     {"name": "researchingQuantityInLongTerm", "quantity": 0}]},
                 "unfulfillableQuantity": {"totalUnfulfillableQuantity": sum(unf), "customerDamagedQuantity": unf[0],
                                           "warehouseDamagedQuantity": unf[1], "distributorDamagedQuantity": unf[2],
                                           "carrierDamagedQuantity": unf[3], "defectiveQuantity": unf[4],
                                           "expiredQuantity": unf[5]}}}
        self.recount(s)
        return s

    @staticmethod
    def recount(s):
        d = s.get("inventoryDetails") or {}
        d.setdefault("reservedQuantity", {})
        d.setdefault("unfulfillableQuantity", {})
        d.setdefault("researchingQuantity", {})
        r = d["reservedQuantity"]
        r["totalReservedQuantity"] = sum(int(r.get(k, 0)) for k in
                                         ("pendingCustomerOrderQuantity", "pendingTransshipmentQuantity",
                                          "fcProcessingQuantity"))
        u = d["unfulfillableQuantity"]
        u["totalUnfulfillableQuantity"] = sum(int(u.get(k, 0)) for k in
                                              ("customerDamagedQuantity", "warehouseDamagedQuantity",
                                               "distributorDamagedQuantity", "carrierDamagedQuantity",
                                               "defectiveQuantity", "expiredQuantity"))
        s["totalQuantity"] = (int(d.get("fulfillableQuantity", 0)) + int(d.get("inboundWorkingQuantity", 0))
                              + int(d.get("inboundShippedQuantity", 0)) + int(d.get("inboundReceivingQuantity", 0))
                              + r["totalReservedQuantity"] + u["totalUnfulfillableQuantity"]
                              + int(d["researchingQuantity"].get("totalResearchingQuantity", 0)))

    def new_order_id(self, rng=None):
        rng = rng or self.rng
        while True:
            oid = "%03d-%07d-%07d" % (rng.randint(111, 114), rng.randint(0, 9999999), rng.randint(0, 9999999))
            if oid not in self.orders:
                return oid

    def make_item(self, o, ln, rng=None):
        rng = rng or self.rng
        cur = MARKETPLACES.get(o.get("MarketplaceId"), ("USD",))[0]
        q = int(ln.get("QuantityOrdered", 1))
        unit = decimal.Decimal(str(ln.get("unit", "19.99")))
        it = {"ASIN": ln["ASIN"], "SellerSKU": ln.get("SellerSKU"),
              "OrderItemId": ln.get("OrderItemId") or "%014d" % rng.randint(10 ** 12, 10 ** 14 - 1),
              "Title": ln.get("Title") or self.item_name(ln["ASIN"]), "QuantityOrdered": q, "QuantityShipped": 0,
              "ProductInfo": {"NumberOfItems": "1"},
              "ItemPrice": {"CurrencyCode": cur, "Amount": money(unit * q)},
              "ItemTax": {"CurrencyCode": cur, "Amount": money(unit * q * decimal.Decimal("0.0825"))},
              "ShippingPrice": {"CurrencyCode": cur, "Amount": "0.00"},
              "PromotionDiscount": {"CurrencyCode": cur, "Amount": "0.00"},
              "PromotionDiscountTax": {"CurrencyCode": cur, "Amount": "0.00"},
              "IsGift": "false", "ConditionId": "New", "ConditionSubtypeId": "New", "IsTransparency": False,
              "SerialNumberRequired": False}
        for k in ("ItemPrice", "ItemTax", "ShippingPrice", "PromotionDiscount"):
            if k in ln:
                it[k] = copy.deepcopy(ln[k])
        return it

    def fill_order(self, o, rng=None):
        """Derived fields: totals (strings), item counts by status, defaults."""
        rng = rng or self.rng
        oid = o["AmazonOrderId"]
        items = self.items.setdefault(oid, [])
        m = o.setdefault("MarketplaceId", self.marketplaces[0])
        cur, channel, country = MARKETPLACES.get(m, ("USD", "Amazon.com", "US"))
        st = o.setdefault("OrderStatus", "Unshipped")
        total_q = sum(int(it.get("QuantityOrdered", 0)) for it in items)
        for it in items:
            q = int(it.get("QuantityOrdered", 0))
            it["QuantityShipped"] = q if st == "Shipped" else 0
        if st == "PartiallyShipped" and items:
            items[0]["QuantityShipped"] = items[0]["QuantityOrdered"]
        shipped = sum(int(it.get("QuantityShipped", 0)) for it in items)
        if st == "Canceled":
            o["NumberOfItemsShipped"], o["NumberOfItemsUnshipped"] = 0, 0
        else:
            o["NumberOfItemsShipped"], o["NumberOfItemsUnshipped"] = shipped, total_q - shipped
        if st in ("Pending", "PendingAvailability", "Canceled"):
            o.pop("OrderTotal", None)     # no money on these (getOrderItems note in ordersV0.json)
        else:
            tot = decimal.Decimal(0)
            for it in items:
                for k in ("ItemPrice", "ItemTax", "ShippingPrice"):
                    tot += decimal.Decimal((it.get(k) or {}).get("Amount", "0"))
                tot -= decimal.Decimal((it.get("PromotionDiscount") or {}).get("Amount", "0"))
            o["OrderTotal"] = {"CurrencyCode": cur, "Amount": money(tot)}
        p = parse_amz_time(o["PurchaseDate"]) / 1e6
        o.setdefault("SellerOrderId", oid)
        o.setdefault("FulfillmentChannel", "MFN")
        o["SalesChannel"] = channel
        o.setdefault("ShipServiceLevel", "Std US D2D Dom" if country == "US" else "Std Dom")
        o.setdefault("PaymentMethod", "Other")
        o.setdefault("PaymentMethodDetails", ["Standard"])
        o.setdefault("ShipmentServiceLevelCategory", "Standard")
        o.setdefault("OrderType", "Preorder" if st == "PendingAvailability" else "StandardOrder")
        o.setdefault("EarliestShipDate", iso_s(p + 86400))
        o.setdefault("LatestShipDate", iso_s(p + 86400 * 3))
        o.setdefault("EarliestDeliveryDate", iso_s(p + 86400 * 3))
        o.setdefault("LatestDeliveryDate", iso_s(p + 86400 * 7))
        for k in ("IsBusinessOrder", "IsPremiumOrder", "IsGlobalExpressEnabled", "IsReplacementOrder",
                  "IsSoldByAB", "IsIBA", "IsISPU", "IsAccessPointOrder", "HasRegulatedItems"):
            o.setdefault(k, False)
        o.setdefault("IsPrime", o.get("FulfillmentChannel") == "AFN")
        city, state, zipc = CITIES[int(hashlib.md5(oid.encode()).hexdigest(), 16) % len(CITIES)]
        o.setdefault("ShippingAddress", {"City": city, "StateOrRegion": state, "PostalCode": zipc,
                                         "CountryCode": country})
        o.setdefault("AutomatedShippingSettings", {"HasAutomatedShippingSettings": False})
        o.setdefault("BuyerInfo", {})

    def state(self):
        now = self.now()
        orders = []
        for oid in sorted(self.orders):
            o = copy.deepcopy(self.orders[oid])
            o["OrderItems"] = copy.deepcopy(self.items.get(oid, []))
            orders.append(o)
        return {"marketplaces": list(self.marketplaces), "orders": orders,
                "inventory": [self.inventory[k] for k in sorted(self.inventory)],
                "catalog": [self.catalog[k] for k in sorted(self.catalog)],
                "tokens": {"access": [{"access_token": t, "expires_at": iso_s(v["exp"]), "expired": now >= v["exp"],
                                       "refresh_token": v["refresh_token"]} for t, v in self.access.items()],
                           "refresh_tokens": sorted(self.refresh_tokens), "client_id": self.client_id},
                "stats": copy.deepcopy(self.stats), "buckets": self.bucket_report(now),
                "config": copy.deepcopy(self.config)}

    def before_serve(self):
        if self.args.dump:
            st = self.state()
            data = {k: st[k] for k in ("marketplaces", "orders", "inventory", "catalog")}
            with open(self.args.dump, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, ensure_ascii=False, sort_keys=True)
                f.write("\n")
            return 0
        return None

    # ------------------------------------------------------------------ errors
    def amz_error(self, status, code, message, details=None, headers=None):
        e = {"code": code, "message": message}
        if details is not None:
            e["details"] = details
        resp = json_response(status, {"errors": [e]}, headers)
        resp.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        return resp

    def invalid(self, details, message="Invalid Input"):
        raise HTTPError(self.amz_error(400, "InvalidInput", message, details))

    FAULTS = {400: ("InvalidInput", "Invalid Input"),
              401: ("Unauthorized", "Access to requested resource is denied."),
              403: ("Unauthorized", "Access to requested resource is denied."),
              404: ("NotFound", "The requested resource was not found."),
              429: ("QuotaExceeded", "You exceeded your quota for the requested resource."),
              500: ("InternalFailure", "We encountered an internal error. Please try again."),
              503: ("ServiceUnavailable", "Service temporarily unavailable. Please try again.")}

    def error_response(self, status, detail, code=None):
        c, m = self.FAULTS.get(status, ("InternalFailure", "Error"))
        return self.amz_error(status, code or c, m, detail)

    def fault_response(self, status, fault):
        if fault.path.startswith("/auth/"):
            err = {400: "invalid_request", 401: "invalid_client", 429: "slow_down",
                   503: "temporarily_unavailable"}.get(status, "server_error")
            return json_response(status, {"error": err, "error_description": "Injected error %d." % status})
        c, m = self.FAULTS.get(status, ("InternalFailure", "We encountered an internal error. Please try again."))
        return self.amz_error(status, c, m)

    def not_found(self, req):
        return self.amz_error(404, "NotFound", "Resource not found.", "No operation for %s %s" % (req.method, req.path))

    def bad_json(self, req, err):
        return self.amz_error(400, "InvalidInput", "Invalid Input", "Malformed body: %s" % err)

    def check_auth(self, req):
        tok = req.header("x-amz-access-token")
        denied = "Access to requested resource is denied."
        if not tok:
            return self.amz_error(403, "Unauthorized", denied, "Access token is missing in the request header.")
        info = self.access.get(tok)
        if info is None:
            return self.amz_error(403, "Unauthorized", denied,
                                  "The access token you provided is revoked, malformed or invalid.")
        if self.now() >= info["exp"]:
            return self.amz_error(403, "Unauthorized", denied, "The access token you provided has expired.")
        req.seller = info["refresh_token"]
        return None

    # ------------------------------------------------------------------ LWA
    def lwa_error(self, status, error, desc):
        self.stats["token_failures"] += 1
        raise HTTPError(json_response(status, {"error": error, "error_description": desc},
                                      {"Cache-Control": "no-store", "Pragma": "no-cache"}))

    def lwa_token(self, req):
        self.stats["token_requests"] += 1
        ct = (req.header("content-type") or "").lower()
        if "json" in ct:
            try:
                body = req.json() or {}
            except Exception:
                body = None
            if not isinstance(body, dict):
                self.lwa_error(400, "invalid_request", "The request body is not valid JSON.")
            form = {k: str(v) for k, v in body.items()}
        else:
            form = {k: v[-1] for k, v in urllib.parse.parse_qs(req.text(), keep_blank_values=True).items()}
        grant = form.get("grant_type")
        if not grant:
            self.lwa_error(400, "invalid_request", "The request is missing a required parameter : grant_type")
        if grant not in ("refresh_token", "client_credentials"):
            self.lwa_error(400, "unsupported_grant_type", "The authorization grant type is not supported by "
                                                          "the authorization server")
        for k in ("client_id", "client_secret"):
            if not form.get(k):
                self.lwa_error(400, "invalid_request", "The request is missing a required parameter : %s" % k)
        if form["client_id"] != self.client_id or form["client_secret"] != self.client_secret:
            self.lwa_error(401, "invalid_client", "Client authentication failed")
        now = self.now()
        ttl = float(self.config["token_ttl"])
        tok = "Atza|" + b64url(os.urandom(280))
        out = {"access_token": tok, "token_type": "bearer", "expires_in": int(ttl)}
        if grant == "refresh_token":
            rt = form.get("refresh_token")
            if not rt:
                self.lwa_error(400, "invalid_request", "The request is missing a required parameter : refresh_token")
            if rt not in self.refresh_tokens:
                self.lwa_error(400, "invalid_grant", "The request has an invalid grant parameter : refresh_token")
            out["refresh_token"] = rt
        else:
            scope = form.get("scope", "")
            if scope not in ("sellingpartnerapi::notifications", "sellingpartnerapi::client_credential:rotation"):
                self.lwa_error(400, "invalid_scope", "The scope is invalid")
            rt = "grantless:" + scope
        self.access[tok] = {"exp": now + ttl, "refresh_token": rt, "issued": now}
        self.stats["token_exchanges"] += 1
        return json_response(200, out, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    # ------------------------------------------------------------------ rate limits
    def op_rate(self, op):
        base = self.config["rates"].get(op) or {}
        rate = float(base.get("rate", OPS[op][0])) * float(self.config["rate_scale"])
        burst = float(base.get("burst", OPS[op][1]))
        return rate, burst

    def refill(self, key, now):
        rate, burst = self.op_rate(key[0])
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = [burst, now]
        if now > b[1]:
            b[0] = min(burst, b[0] + (now - b[1]) * rate)
        b[0] = min(b[0], burst)
        b[1] = now
        return b

    def bucket_report(self, now):
        out = {}
        for key in sorted(self.buckets):
            b = self.refill(key, now)
            rate, burst = self.op_rate(key[0])
            out.setdefault(key[0], {})[key[1]] = {"tokens": round(b[0], 4), "rate": rate, "burst": burst}
        return out

    def op(self, name, func):
        def handler(req):
            self.stats["calls"][name] += 1
            key = (name, getattr(req, "seller", ""))
            b = self.refill(key, self.now())
            if b[0] < 1.0 and self.config["throttle"]:
                self.stats["throttled"][name] += 1
                return self.amz_error(429, "QuotaExceeded", "You exceeded your quota for the requested resource.")
            b[0] = max(0.0, b[0] - 1.0)
            try:
                resp = func(req)
            except HTTPError as e:
                resp = e.response
            resp.headers.setdefault("x-amzn-RequestId", str(uuid.uuid4()))
            if resp.status < 300 or resp.status in (400, 404):
                resp.headers["x-amzn-RateLimit-Limit"] = "%g" % self.op_rate(name)[0]
            return resp
        return handler

    # ------------------------------------------------------------------ tokens (NextToken etc.)
    def make_token(self, obj):
        payload = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
        return b64url(payload + hmac.new(self.secret, payload, hashlib.sha256).digest()[:12])

    def read_token(self, text, name):
        try:
            raw = b64url_decode(text)
            payload, sig = raw[:-12], raw[-12:]
            if len(raw) <= 12 or not hmac.compare_digest(
                    sig, hmac.new(self.secret, payload, hashlib.sha256).digest()[:12]):
                raise ValueError("sig")
            return json.loads(payload)
        except (ValueError, TypeError, UnicodeDecodeError):
            self.invalid("Invalid %s: %s" % (name, text[:60]))

    @staticmethod
    def fingerprint(parts):
        return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]

    # ------------------------------------------------------------------ params
    @staticmethod
    def list_param(req, name):
        vals = req.query.get(name)
        if vals is None:
            return None
        out = []
        for v in vals:
            out.extend(x.strip() for x in v.split(",") if x.strip())
        return out

    def time_param(self, req, name):
        v = req.arg(name)
        if v is None:
            return None
        try:
            return parse_amz_time(v)
        except ValueError:
            self.invalid("Invalid %s: %r is not an ISO 8601 date-time." % (name, v))

    def int_param(self, req, name, lo, hi, default):
        v = req.arg(name)
        if v is None or v == "":
            return default
        try:
            n = int(v)
        except ValueError:
            self.invalid("%s must be an integer between %d and %d." % (name, lo, hi))
        if not lo <= n <= hi:
            self.invalid("%s must be between %d and %d." % (name, lo, hi))
        return n

    def marketplaces_param(self, req, name, required=True, max_n=50):
        ms = self.list_param(req, name)
        if not ms:
            if required:
                self.invalid("%s is required." % name)
            return []
        if len(ms) > max_n:
            self.invalid("%s: at most %d values." % (name, max_n))
        for m in ms:
            if m not in self.marketplaces:
                self.invalid("Invalid MarketplaceId: %s" % m if name == "MarketplaceIds"
                             else "Invalid %s: %s" % (name, m))
        return ms

    def enum_list(self, req, name, allowed):
        vals = self.list_param(req, name)
        for v in vals or []:
            if v not in allowed:
                self.invalid("Invalid %s: %s" % (name, v))
        return vals

    _us_cache = {}

    def us(self, s):
        v = self._us_cache.get(s)
        if v is None:
            v = parse_amz_time(s)
            if len(self._us_cache) > 100000:
                self._us_cache.clear()
            self._us_cache[s] = v
        return v

    # ------------------------------------------------------------------ orders
    LIST_PARAMS = {"MarketplaceIds", "OrderStatuses", "FulfillmentChannels", "PaymentMethods", "AmazonOrderIds",
                   "EasyShipShipmentStatuses", "ElectronicInvoiceStatuses"}
    TIME_PARAMS = {"CreatedAfter", "CreatedBefore", "LastUpdatedAfter", "LastUpdatedBefore",
                   "EarliestDeliveryDateBefore", "EarliestDeliveryDateAfter", "LatestDeliveryDateBefore",
                   "LatestDeliveryDateAfter"}

    def orders_fingerprint(self, req):
        parts = {}
        for k in req.query:
            if k == "NextToken":
                continue
            if k in self.LIST_PARAMS:
                parts[k] = sorted(self.list_param(req, k))
            elif k in self.TIME_PARAMS:
                try:
                    parts[k] = parse_amz_time(req.arg(k))
                except ValueError:
                    parts[k] = req.arg(k)
            else:
                parts[k] = req.arg(k)
        return self.fingerprint(parts), parts

    def get_orders(self, req):
        now = self.now()
        limit = int(math.floor(now)) - 120          # "at least two minutes before current time"
        nt = req.arg("NextToken")
        size = self.int_param(req, "MaxResultsPerPage", 1, 100, 100)
        fp, parts = self.orders_fingerprint(req)
        if nt is not None:
            tok = self.read_token(nt, "NextToken")
            if tok.get("k") != "orders":
                self.invalid("Invalid NextToken.")
            if tok["fp"] != fp:
                lenient = self.config["lenient_next_token"] and set(parts) <= {"MarketplaceIds", "MaxResultsPerPage"}
                if not lenient:
                    self.invalid("The NextToken does not match the request: send the same query parameters "
                                 "as the request that returned it, plus NextToken.")
            q = tok["q"]
        else:
            q = self.orders_query(req, limit)
        field = "LastUpdateDate" if q["by"] == "updated" else "PurchaseDate"
        after, before = q["after"], q["before"]
        mk, st, ch, pm, ids = (set(q[k]) if q.get(k) else None for k in ("m", "st", "ch", "pm", "ids"))
        rows = []
        for o in self.orders.values():
            if o["MarketplaceId"] not in mk:
                continue
            if ids is not None:
                if o["AmazonOrderId"] not in ids:
                    continue
            if after is not None or before is not None:
                t = self.us(o[field]) // 1_000_000
                if (after is not None and t < after) or (before is not None and t > before):
                    continue
            if st is not None and o["OrderStatus"] not in st:
                continue
            if ch is not None and o.get("FulfillmentChannel") not in ch:
                continue
            if pm is not None and o.get("PaymentMethod") not in pm:
                continue
            if q.get("sid") and o.get("SellerOrderId") != q["sid"]:
                continue
            rows.append(([self.us(o[field]) // 1_000_000, o["AmazonOrderId"]], o))
        rows.sort(key=lambda kv: kv[0])
        start = 0
        if nt is not None:
            last = tok["key"]
            while start < len(rows) and rows[start][0] <= last:
                start += 1
        chunk = rows[start:start + size]
        payload = {"Orders": [copy.deepcopy(o) for _, o in chunk]}
        if start + size < len(rows) and chunk:
            payload["NextToken"] = self.make_token({"k": "orders", "fp": fp, "q": q, "key": chunk[-1][0]})
        if before is not None:
            payload["LastUpdatedBefore" if q["by"] == "updated" else "CreatedBefore"] = iso_s(before)
        return json_response(200, {"payload": payload})

    def orders_query(self, req, limit):
        ms = self.marketplaces_param(req, "MarketplaceIds")
        ids = self.list_param(req, "AmazonOrderIds")
        if ids is not None and len(ids) > 50:
            self.invalid("AmazonOrderIds: at most 50 values.")
        ca, cb = self.time_param(req, "CreatedAfter"), self.time_param(req, "CreatedBefore")
        la, lb = self.time_param(req, "LastUpdatedAfter"), self.time_param(req, "LastUpdatedBefore")
        if ca is not None and la is not None:
            self.invalid("CreatedAfter and LastUpdatedAfter cannot both be specified.")
        if ca is None and la is None and not ids:
            self.invalid("Either CreatedAfter or LastUpdatedAfter must be specified.")
        if la is not None and (cb is not None):
            self.invalid("CreatedBefore cannot be set when LastUpdatedAfter is set.")
        if ca is not None and lb is not None:
            self.invalid("LastUpdatedAfter and LastUpdatedBefore cannot be set when CreatedAfter is set.")
        by = "created" if ca is not None or (la is None and cb is not None) else "updated"
        after = ca if by == "created" else la
        before = cb if by == "created" else lb
        aname = "CreatedAfter" if by == "created" else "LastUpdatedAfter"
        bname = "CreatedBefore" if by == "created" else "LastUpdatedBefore"
        cutoff = (self.now() - 120) * 1e6               # "at least two minutes before current time"
        after_s = None if after is None else after // 1_000_000
        if after is not None and after > cutoff:
            self.invalid("%s must be at least two minutes before the time of the request." % aname)
        if before is not None:
            if before > cutoff:
                self.invalid("%s must be at least two minutes before the time of the request." % bname)
            if after is not None and before < after:
                self.invalid("%s must be equal to or after %s." % (bname, aname))
            before_s = before // 1_000_000
        else:
            before_s = limit if after_s is not None else None
        q = {"by": by, "after": after_s, "before": before_s, "m": ms, "ids": ids,
             "st": self.enum_list(req, "OrderStatuses", ORDER_STATUSES),
             "ch": self.enum_list(req, "FulfillmentChannels", CHANNELS),
             "pm": self.enum_list(req, "PaymentMethods", PAYMENT_METHODS),
             "sid": req.arg("SellerOrderId")}
        return q

    def find_order(self, oid):
        o = self.orders.get(oid)
        if o is None:
            raise HTTPError(self.amz_error(404, "NotFound", "The requested resource was not found.",
                                           "Order %s not found." % oid))
        return o

    def get_order(self, req):
        o = self.find_order(req.params["id"])
        return json_response(200, {"payload": copy.deepcopy(o)})

    def get_order_items(self, req):
        oid = req.params["id"]
        self.find_order(oid)
        items = self.items.get(oid, [])
        size = max(1, int(self.config["items_page_size"]))
        start = 0
        nt = req.arg("NextToken")
        if nt is not None:
            tok = self.read_token(nt, "NextToken")
            if tok.get("k") != "items" or tok.get("oid") != oid:
                self.invalid("The NextToken does not belong to order %s." % oid)
            start = int(tok["off"])
        chunk = copy.deepcopy(items[start:start + size])
        if self.orders[oid].get("OrderStatus") in ("Pending", "PendingAvailability"):
            for it in chunk:      # pricing is withheld until payment is authorised (getOrderItems description)
                for k in ("ItemPrice", "ItemTax", "ShippingPrice", "PromotionDiscount", "PromotionDiscountTax"):
                    it.pop(k, None)
        payload = {"OrderItems": chunk, "AmazonOrderId": oid}
        if start + size < len(items):
            payload["NextToken"] = self.make_token({"k": "items", "oid": oid, "off": start + size})
        return json_response(200, {"payload": payload})

    # ------------------------------------------------------------------ FBA inventory
    def get_inventory(self, req):
        now = self.now()
        gt = req.arg("granularityType")
        if gt is None:
            self.invalid("granularityType is required.")
        if gt != "Marketplace":
            self.invalid("Invalid granularityType: %s (only Marketplace is supported)." % gt)
        gid = req.arg("granularityId")
        if not gid:
            self.invalid("granularityId is required.")
        if gid not in self.marketplaces:
            self.invalid("Invalid granularityId: %s" % gid)
        ms = self.marketplaces_param(req, "marketplaceIds", max_n=1)
        det = (req.arg("details") or "false").lower()
        if det not in ("true", "false"):
            self.invalid("details must be true or false.")
        sdt = self.time_param(req, "startDateTime")
        if sdt is not None:
            if sdt < (now - 548 * 86400) * 1e6:
                self.invalid("startDateTime must be no earlier than 18 months before the time of the request.")
            if sdt > now * 1e6:
                self.invalid("startDateTime cannot be in the future.")
        skus = self.list_param(req, "sellerSkus")
        if skus is not None and len(skus) > 50:
            self.invalid("sellerSkus: at most 50 values.")
        sku = req.arg("sellerSku")
        fp = self.fingerprint({"g": gid, "m": ms, "sdt": sdt})
        after_key = None
        nt = req.arg("nextToken")
        if nt is not None:
            tok = self.read_token(nt, "nextToken")
            if tok.get("k") != "inv":
                self.invalid("Invalid nextToken.")
            if now - tok["t"] > float(self.config["next_token_ttl"]):
                self.invalid("The nextToken has expired. nextToken is valid for %g seconds after it is issued."
                             % float(self.config["next_token_ttl"]))
            if tok["fp"] != fp:
                self.invalid("The nextToken does not match the request: when paging a startDateTime query, "
                             "send startDateTime again with nextToken.")
            after_key = tok["key"]
        rows = []
        for s in self.inventory.values():
            if sdt is not None:
                if self.us(s["lastUpdatedTime"]) < sdt:
                    continue
            elif skus:
                if s["sellerSku"] not in skus:
                    continue
            elif sku is not None:
                if s["sellerSku"] != sku:
                    continue
            rows.append(s)
        rows.sort(key=lambda s: s["sellerSku"])
        if after_key is not None:
            rows = [s for s in rows if s["sellerSku"] > after_key]
        size = max(1, int(self.config["inventory_page_size"]))
        chunk = rows[:size]
        out = []
        for s in chunk:
            s = copy.deepcopy(s)
            if det != "true":
                s.pop("inventoryDetails", None)
            out.append(s)
        body = {"payload": {"granularity": {"granularityType": gt, "granularityId": gid},
                            "inventorySummaries": out}}
        if len(rows) > size:
            body["pagination"] = {"nextToken": self.make_token({"k": "inv", "fp": fp, "key": chunk[-1]["sellerSku"],
                                                                "t": now})}
        return json_response(200, body)

    # ------------------------------------------------------------------ catalog
    def included(self, req):
        inc = self.list_param(req, "includedData") or ["summaries"]
        for x in inc:
            if x not in INCLUDED_DATA:
                self.invalid("Invalid includedData: %s" % x, "Request has missing or invalid parameters and "
                                                            "cannot be parsed.")
        return inc

    def render_item(self, it, m, inc):
        out = {"asin": it["asin"]}
        for ds in inc:
            v = it.get(ds)
            if ds == "attributes":
                out[ds] = {k: [x for x in vals if x.get("marketplace_id") == m]
                           for k, vals in (v or {}).items()}
            elif isinstance(v, list):
                out[ds] = [copy.deepcopy(x) for x in v if x.get("marketplaceId") == m]
            else:
                out[ds] = []
        return out

    def search_catalog(self, req):
        bad = "Request has missing or invalid parameters and cannot be parsed."
        ms = self.list_param(req, "marketplaceIds")
        if not ms or not all(ms):
            self.invalid("marketplaceIds is required.", bad)
        if len(ms) > 1:
            self.invalid("marketplaceIds: at most 1 value.", bad)
        if ms[0] not in self.marketplaces:
            self.invalid("Invalid marketplaceIds: %s" % ms[0], bad)
        m = ms[0]
        kws = self.list_param(req, "keywords")
        ids = self.list_param(req, "identifiers")
        if kws and ids:
            self.invalid("identifiers and keywords cannot be used together.", bad)
        if not kws and not ids:
            self.invalid("Either identifiers or keywords is required.", bad)
        for name, v in (("keywords", kws), ("identifiers", ids)):
            if v and len(v) > 20:
                self.invalid("%s: at most 20 values." % name, bad)
        itype = req.arg("identifiersType")
        if ids:
            if not itype:
                self.invalid("identifiersType is required when identifiers is provided.", bad)
            if itype not in IDENTIFIER_TYPES:
                self.invalid("Invalid identifiersType: %s" % itype, bad)
            if itype == "SKU" and not req.arg("sellerId"):
                self.invalid("sellerId is required when identifiersType is SKU.", bad)
            for p in ("brandNames", "classificationIds", "keywordsLocale"):
                if req.arg(p) is not None:
                    self.invalid("%s cannot be used with identifiers." % p, bad)
        inc = self.included(req)
        size = self.int_param(req, "pageSize", 1, 20, 10)
        brands = self.list_param(req, "brandNames")
        cls_ids = self.list_param(req, "classificationIds")
        fp = self.fingerprint({"m": m, "kw": kws, "ids": ids, "it": itype, "b": brands, "c": cls_ids,
                               "sel": req.arg("sellerId")})
        offset = 0
        pt = req.arg("pageToken")
        if pt is not None:
            tok = self.read_token(pt, "pageToken")
            if tok.get("k") != "cat" or tok.get("fp") != fp:
                self.invalid("The pageToken does not match the request.", bad)
            offset = int(tok["off"])
        matches = self.catalog_matches(m, kws, ids, itype, brands, cls_ids)
        total = len(matches)
        reachable = min(total, max(0, int(self.config["catalog_max_results"])))
        page = matches[offset:min(offset + size, reachable)]
        pag = {}
        if offset + size < reachable:
            pag["nextToken"] = self.make_token({"k": "cat", "fp": fp, "off": offset + size})
        if offset > 0:
            pag["previousToken"] = self.make_token({"k": "cat", "fp": fp, "off": max(0, offset - size)})
        body = {"numberOfResults": total}
        if pag:
            body["pagination"] = pag
        brand_n, cls_n = {}, {}
        if kws:
            for it in matches:
                s = self.summary(it, m)
                brand_n[s.get("brand")] = brand_n.get(s.get("brand"), 0) + 1
                bc = s.get("browseClassification") or {}
                k = (bc.get("displayName"), bc.get("classificationId"))
                cls_n[k] = cls_n.get(k, 0) + 1
        body["refinements"] = {
            "brands": [{"numberOfResults": n, "brandName": b} for b, n in sorted(brand_n.items(), key=lambda x: -x[1])],
            "classifications": [{"numberOfResults": n, "displayName": d, "classificationId": c}
                                for (d, c), n in sorted(cls_n.items(), key=lambda x: -x[1])]}
        body["items"] = [self.render_item(it, m, inc) for it in page]
        return json_response(200, body)

    @staticmethod
    def summary(it, m):
        for s in it.get("summaries", []):
            if s.get("marketplaceId") == m:
                return s
        return {}

    def catalog_matches(self, m, kws, ids, itype, brands, cls_ids):
        if ids:
            out, seen = [], set()
            for ident in ids:
                for it in self.catalog_by_identifier(m, ident, itype):
                    if it["asin"] not in seen:
                        seen.add(it["asin"])
                        out.append(it)
            return out
        words = [k.lower() for k in kws]
        out = []
        for asin in sorted(self.catalog):
            it = self.catalog[asin]
            s = self.summary(it, m)
            if not s:
                continue
            text = " ".join(str(s.get(k, "")) for k in ("itemName", "brand", "manufacturer")).lower()
            if not all(w in text for w in words):
                continue
            if brands and s.get("brand") not in brands:
                continue
            if cls_ids and (s.get("browseClassification") or {}).get("classificationId") not in cls_ids:
                continue
            out.append(it)
        return out

    def catalog_by_identifier(self, m, ident, itype):
        if itype == "ASIN":
            it = self.catalog.get(ident)
            return [it] if it and self.summary(it, m) else []
        if itype == "SKU":
            s = self.inventory.get(ident)
            if s and s["asin"] in self.catalog:
                return [self.catalog[s["asin"]]]
            return []
        out = []
        for asin in sorted(self.catalog):
            it = self.catalog[asin]
            for group in it.get("identifiers", []):
                if group.get("marketplaceId") != m:
                    continue
                for x in group.get("identifiers", []):
                    if x.get("identifierType") == itype and x.get("identifier") == ident:
                        out.append(it)
        return out

    def get_catalog_item(self, req):
        ms = self.list_param(req, "marketplaceIds")
        if not ms:
            self.invalid("marketplaceIds is required.", "Request has missing or invalid parameters and cannot be parsed.")
        for m in ms:
            if m not in self.marketplaces:
                self.invalid("Invalid marketplaceIds: %s" % m)
        inc = self.included(req)
        asin = req.params["asin"]
        it = self.catalog.get(asin)
        if it is None:
            raise HTTPError(self.amz_error(404, "NOT_FOUND", "Requested item '%s' not found in marketplace(s) %s."
                                           % (asin, ",".join(ms))))
        out = {"asin": asin}
        for m in ms:
            r = self.render_item(it, m, inc)
            for k, v in r.items():
                if k == "asin":
                    continue
                if isinstance(v, list):
                    out.setdefault(k, []).extend(v)
                else:
                    for ak, av in v.items():
                        out.setdefault(k, {}).setdefault(ak, []).extend(av)
        return json_response(200, out)

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

    def specs(self, b, one, many):
        items = b.get(many) if b.get(many) is not None else ([b[one]] if b.get(one) is not None else [])
        if not isinstance(items, list) or not items or not all(isinstance(x, dict) for x in items):
            self.cfail("%s (object) or %s (list of objects) required" % (one, many))
        return copy.deepcopy(items)

    def ctl_expire(self, req):
        b = self.ctl_body(req)
        now = self.now()
        n = 0
        for v in self.access.values():
            if v["exp"] > now:
                n += 1
            v["exp"] = min(v["exp"], now)
        out = {"expired": n}
        if b.get("refresh"):
            out["revoked_refresh_tokens"] = sorted(self.refresh_tokens)
            self.refresh_tokens = set()
        return json_response(200, out)

    def ctl_credentials(self, req):
        b = self.ctl_body(req)
        if "client_id" in b:
            self.client_id = str(b["client_id"])
        if "client_secret" in b:
            self.client_secret = str(b["client_secret"])
        if "refresh_tokens" in b:
            rts = b["refresh_tokens"]
            if not isinstance(rts, list) or not all(isinstance(x, str) for x in rts):
                self.cfail("refresh_tokens: a list of strings")
            self.refresh_tokens = set(rts)
        return json_response(200, {"client_id": self.client_id, "client_secret": self.client_secret,
                                   "refresh_tokens": sorted(self.refresh_tokens)})

    def ctl_order(self, req):
        b = self.ctl_body(req)
        now = int(math.floor(self.now()))
        out = []
        for spec in self.specs(b, "order", "orders"):
            oid = spec.pop("AmazonOrderId", None)
            lines = spec.pop("OrderItems", None)
            if spec.get("OrderStatus") is not None and spec["OrderStatus"] not in ORDER_STATUSES:
                self.cfail("bad OrderStatus %r" % spec["OrderStatus"])
            if spec.get("MarketplaceId") is not None and spec["MarketplaceId"] not in self.marketplaces:
                self.cfail("MarketplaceId %r is not one of the seller's marketplaces" % spec["MarketplaceId"])
            cur = self.orders.get(oid) if oid else None
            if cur is not None:
                o = copy.deepcopy(cur)
                spec.pop("PurchaseDate", None)
                deep_merge(o, spec)
            else:
                o = spec
                o["AmazonOrderId"] = oid or self.new_order_id()
                o.setdefault("PurchaseDate", iso_s(now))
                o.setdefault("OrderStatus", "Unshipped")
                o.setdefault("MarketplaceId", self.marketplaces[0])
                if lines is None:
                    lines = [{"ASIN": next(iter(sorted(self.catalog)))}] if self.catalog else []
            if "OrderTotal" in spec:
                spec.pop("OrderTotal")
            if lines is not None:
                its = []
                for ln in lines:
                    if not isinstance(ln, dict):
                        self.cfail("OrderItems[] must be objects")
                    ln = dict(ln)
                    if not ln.get("ASIN") and ln.get("SellerSKU") in self.inventory:
                        ln["ASIN"] = self.inventory[ln["SellerSKU"]]["asin"]
                    if not ln.get("ASIN"):
                        self.cfail("an order item needs ASIN or a known SellerSKU")
                    ln.setdefault("SellerSKU", next((s for s, v in self.inventory.items() if v["asin"] == ln["ASIN"]),
                                                    "MFN-%s" % ln["ASIN"]))
                    if "unit" not in ln and "ItemPrice" in ln:
                        q = int(ln.get("QuantityOrdered", 1))
                        ln["unit"] = decimal.Decimal(ln["ItemPrice"]["Amount"]) / q
                    keep = {k: v for k, v in ln.items() if k not in ("unit",)}
                    it = self.make_item(o, ln)
                    for k, v in keep.items():
                        if k not in ("ItemPrice", "ItemTax", "ShippingPrice", "PromotionDiscount"):
                            it[k] = v
                    its.append(it)
                self.items[o["AmazonOrderId"]] = its
            o["LastUpdateDate"] = iso_s(now)
            self.fill_order(o)
            self.orders[o["AmazonOrderId"]] = o
            oo = copy.deepcopy(o)
            oo["OrderItems"] = copy.deepcopy(self.items[o["AmazonOrderId"]])
            out.append(oo)
        return json_response(200, {"orders": out})

    def ctl_inventory(self, req):
        b = self.ctl_body(req)
        now = self.now()
        out = []
        for spec in self.specs(b, "summary", "summaries"):
            sku = spec.get("sellerSku")
            if not isinstance(sku, str) or not sku:
                self.cfail("summaries[] need sellerSku")
            cur = self.inventory.get(sku)
            if cur is None:
                asin = spec.get("asin")
                if asin not in self.catalog:
                    self.cfail("a new SKU needs the asin of a catalog item")
                cur = self.make_summary(sku, asin, self.item_name(asin), now, self.rng)
                for k in ("fulfillableQuantity", "inboundWorkingQuantity", "inboundShippedQuantity",
                          "inboundReceivingQuantity"):
                    cur["inventoryDetails"][k] = 0
            s = copy.deepcopy(cur)
            det = spec.pop("inventoryDetails", None)
            for k in ("fulfillableQuantity", "inboundWorkingQuantity", "inboundShippedQuantity",
                      "inboundReceivingQuantity"):
                if k in spec:
                    s["inventoryDetails"][k] = int(spec.pop(k))
            if det:
                deep_merge(s["inventoryDetails"], det)
            spec.pop("totalQuantity", None)
            spec.pop("lastUpdatedTime", None)
            deep_merge(s, spec)
            self.recount(s)
            s["lastUpdatedTime"] = iso_s(now)
            self.inventory[sku] = s
            out.append(s)
        return json_response(200, {"summaries": out})

    def ctl_catalog(self, req):
        b = self.ctl_body(req)
        out = []
        for spec in self.specs(b, "item", "items"):
            asin = spec.get("asin") or self.new_asin(self.rng)
            cur = self.catalog.get(asin)
            if cur is None:
                name = spec.pop("itemName", None) or "New Item %s" % asin
                brand = spec.pop("brand", None) or "Etl Goods"
                cur = self.make_catalog_item(asin, name, brand, spec.pop("productType", "PRODUCT"),
                                             spec.pop("group", "Home"), spec.pop("color", "Black"),
                                             spec.pop("size", "One Size"), self.rng)
            else:
                name = spec.pop("itemName", None)
                brand = spec.pop("brand", None)
                for s in cur.get("summaries", []):
                    if name:
                        s["itemName"] = name
                    if brand:
                        s["brand"] = brand
            spec.pop("asin", None)
            for k, v in spec.items():
                cur[k] = copy.deepcopy(v)
            self.catalog[asin] = cur
            out.append(cur)
        return json_response(200, {"items": out})

    def ctl_config(self, req):
        b = self.ctl_body(req)
        for k, v in b.items():
            if k not in self.config:
                self.cfail("unknown config key %r" % k)
            if k == "rates":
                if not isinstance(v, dict):
                    self.cfail("rates: {operation: {rate, burst}}")
                for op, rb in v.items():
                    if op not in OPS or not isinstance(rb, dict):
                        self.cfail("rates: unknown operation %r (known: %s)" % (op, ", ".join(OPS)))
                    self.config["rates"][op] = {kk: float(vv) for kk, vv in rb.items() if kk in ("rate", "burst")}
            elif k in ("lenient_next_token", "throttle"):
                self.config[k] = bool(v)
            elif k in ("items_page_size", "inventory_page_size", "catalog_max_results"):
                self.config[k] = int(v)
            else:
                self.config[k] = float(v)
        self.buckets = {}           # new limits start with full buckets
        return json_response(200, {"config": copy.deepcopy(self.config)})

    def ctl_get_buckets(self, req):
        return json_response(200, {"buckets": self.bucket_report(self.now())})

    def ctl_buckets(self, req):
        b = self.ctl_body(req)
        now = self.now()
        if b.get("refill"):
            self.buckets = {}
        for op, n in (b.get("set") or {}).items():
            if op not in OPS:
                self.cfail("unknown operation %r" % op)
            keys = [k for k in self.buckets if k[0] == op] or [(op, rt) for rt in self.refresh_tokens]
            for k in keys:
                self.refill(k, now)[0] = float(n)
        return json_response(200, {"buckets": self.bucket_report(now)})


if __name__ == "__main__":
    sys.exit(main(AmazonMock))

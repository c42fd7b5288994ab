"""Fixed word lists the generator draws names, places and devices from.

Tuples, never sets, so that every draw is reproducible. Some entries hold non-ASCII letters,
apostrophes, commas and double quotes on purpose: they exercise JSON escaping and CSV quoting.
"""

from __future__ import annotations

FIRST_NAMES: tuple[str, ...] = (
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Ava", "Elijah", "Sophia", "James",
    "Isabella", "William", "Mia", "Lucas", "Charlotte", "Henry", "Harper", "Theo", "Evelyn", "Jack",
    "Zoë", "José", "Chloé", "Søren", "Łukasz", "Anaïs", "Björn", "Renée", "Mateo", "Priya",
    "Aisha", "Hiroshi", "Mei", "Fatima", "Kwame", "Ines", "Lars", "Giulia", "Pierre", "Hannah",
)  # fmt: skip

LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson",
    "Taylor", "Anderson", "Thomas", "Moore", "Martin", "Jackson", "White", "Harris", "Clark",
    "Lewis", "Walker",
    "O'Brien", "Müller", "Schröder", "Dubois", "Lefèvre", "García-López", "Nakamura", "Kowalski",
    "Rossi", "Jansen", "Nielsen", "Okafor", "Patel", "Chen", "Novák", "D'Angelo", "Ferreira",
)  # fmt: skip

# (ISO 3166-1 alpha-2, order currency, weight, cities)
COUNTRIES: tuple[tuple[str, str, float, tuple[str, ...]], ...] = (
    ("US", "USD", 0.38, ("New York", "Chicago", "Austin", "Seattle", "Denver", "Boston")),
    ("GB", "GBP", 0.18, ("London", "Manchester", "Leeds", "Bristol", "Glasgow")),
    ("DE", "EUR", 0.11, ("Berlin", "München", "Hamburg", "Köln")),
    ("FR", "EUR", 0.09, ("Paris", "Lyon", "Marseille", "Toulouse")),
    ("ES", "EUR", 0.05, ("Madrid", "Barcelona", "València")),
    ("IT", "EUR", 0.04, ("Roma", "Milano", "Torino")),
    ("NL", "EUR", 0.04, ("Amsterdam", "Rotterdam", "Utrecht")),
    ("IE", "EUR", 0.03, ("Dublin", "Cork")),
    ("CA", "USD", 0.05, ("Toronto", "Montréal", "Vancouver")),
    ("AU", "USD", 0.03, ("Sydney", "Melbourne", "Brisbane")),
)

CURRENCIES: tuple[str, ...] = ("USD", "EUR", "GBP")

PHONE_PREFIX: dict[str, str] = {
    "US": "+1 212 555 ", "GB": "+44 20 7946 ", "DE": "+49 30 901820", "FR": "+33 1 99 00 ",
    "ES": "+34 91 000 ", "IT": "+39 06 0000 ", "NL": "+31 20 000 ", "IE": "+353 1 000 ",
    "CA": "+1 416 555 ", "AU": "+61 2 5550 ",
}  # fmt: skip

CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kitchen", ("Mug", "Teapot", 'Skillet 12"', "Chef's Knife", "Cutting Board", "Mug, Large")),
    ("home", ("Cushion", "Throw Blanket", "Lamp", "Vase", "Picture Frame, 20x30")),
    ("apparel", ("T-Shirt", "Hoodie", "Rain Jacket", "Wool Socks", "Beanie")),
    ("electronics", ("Headphones", "USB-C Cable, 2m", "Power Bank", "Speaker", "Keyboard")),
    ("outdoor", ("Water Bottle", "Backpack 30L", "Tent", "Headlamp", "Camping Chair")),
    ("beauty", ("Face Cream", "Shampoo", "Lip Balm", "Soap Bar")),
)

ADJECTIVES: tuple[str, ...] = (
    "Classic", "Nordic", "Urban", "Eco", "Deluxe", "Compact", "Vintage", "Pro", "Café", "Alpine",
)  # fmt: skip

BRANDS: tuple[str, ...] = (
    "Acme", "Northwind", "Contoso", "Fabrikam", "Lumière", "Tailspin", "Woodgrove", "Adatum",
    "Kraftwerk & Co", "Blue Yonder",
)  # fmt: skip

USER_AGENTS: tuple[str, ...] = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.144 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
)

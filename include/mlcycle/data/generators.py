"""Seeded generators of realistic daily batches for the shipped example models.

Each batch is reproducible from (generator, day, seed). Options inject what real
pipelines meet: ``drift`` shifts feature distributions (and the relationship to the
label a little), ``corrupt`` breaks the contract (impossible values, missing keys,
unknown categories, and for text broken strings), ``shuffle_labels`` destroys the signal
(a deliberately worse training set).
"""

from __future__ import annotations

import random
import re
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    import numpy as np
    import pandas as pd


def _rng(name: str, day: dt.date, seed: int) -> np.random.Generator:
    import numpy as np

    return np.random.default_rng([zlib.crc32(name.encode()), day.toordinal(), seed])


def _with_nulls(rng: np.random.Generator, values: np.ndarray, rate: float) -> np.ndarray:
    out = values.astype("float64")
    out[rng.random(len(out)) < rate] = float("nan")
    return out


def churn_batch(
    day: dt.date, rows: int, *, seed: int = 0, drift: float = 0.0, degrade: float = 0.0
) -> pd.DataFrame:
    """Telecom subscribers observed on ``day``; ``churned`` = cancelled within 30 days.

    ``degrade`` is a concept shift in one segment (customers in the south, a quarter of the
    rows): a new competitor there makes churn follow the usual signals less (the logit is
    flattened by up to 90 %), and the segment's tenure and charges come a little closer to
    typical values, so the marginal distributions barely move while the model is right less
    often. Only labels show it: a label-free estimate reads the scores, which barely change."""
    import numpy as np
    import pandas as pd

    rng = _rng("churn", day, seed)
    contract = rng.choice(
        ["month-to-month", "one-year", "two-year"],
        rows,
        p=np.array([0.55, 0.25, 0.20]) * (1 - drift) + np.array([0.80, 0.15, 0.05]) * drift,
    )
    internet = rng.choice(["fiber", "dsl", "none"], rows, p=[0.45, 0.35, 0.20])
    payment = rng.choice(
        ["electronic-check", "mailed-check", "bank-transfer", "credit-card"], rows, p=[0.35, 0.2, 0.22, 0.23]
    )
    region = rng.choice(["north", "south", "east", "west"], rows, p=[0.3, 0.25, 0.25, 0.2])
    tenure = np.clip(rng.gamma(1.6, 14.0, rows) * (1 - 0.5 * drift), 0, 72).round().astype("int64")
    base_charge = np.where(internet == "fiber", 85.0, np.where(internet == "dsl", 55.0, 22.0))
    monthly = np.clip(base_charge + rng.normal(0, 12, rows) + 25 * drift, 18.0, 150.0).round(2)
    total = (monthly * np.maximum(tenure, 1) * rng.uniform(0.9, 1.05, rows)).round(2)
    support_calls = rng.poisson(1.2 + 1.5 * drift, rows).astype("int64")
    age = np.clip(rng.normal(46, 15, rows), 18, 90).round()
    segment = (region == "south") & (degrade > 0)
    if segment.any():  # a little closer to the typical customer
        pull = 0.5 * degrade
        tenure = np.where(segment, np.round(tenure * (1 - pull) + 16 * pull), tenure).astype("int64")
        monthly = np.where(segment, (monthly * (1 - pull) + 70 * pull).round(2), monthly)
        total = (monthly * np.maximum(tenure, 1) * rng.uniform(0.9, 1.05, rows)).round(2)
    logit = (
        -1.6
        + 1.3 * (contract == "month-to-month")
        - 0.9 * (contract == "two-year")
        + 0.55 * (internet == "fiber")
        + 0.45 * (payment == "electronic-check")
        - 0.045 * tenure
        + 0.018 * (monthly - 65)
        + 0.35 * support_calls
        - 0.006 * (age - 46)
    )
    logit = np.where(segment, -0.6 + (logit + 0.6) * (1 - 0.9 * degrade), logit)
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    return pd.DataFrame(
        {
            # Unique across days whatever the batch size: the day, then the row number.
            "customer_id": [f"C{day:%Y%m%d}{i:09d}" for i in range(rows)],
            "event_date": pd.Series([day] * rows, dtype="datetime64[ms]"),
            "tenure_months": tenure,
            "monthly_charges": monthly,
            # New customers have no billing history yet: total is missing for ~2 %.
            "total_charges": _with_nulls(rng, total, 0.02),
            "support_calls": support_calls,
            "age": _with_nulls(rng, age, 0.04),
            "contract": contract,
            "internet_service": internet,
            "payment_method": payment,
            "region": region,
            "churned": churned,
        }
    )


def demand_batch(day: dt.date, rows: int, *, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    """Daily unit sales per store and SKU; ``units_sold`` is the target."""
    import numpy as np
    import pandas as pd

    rng = _rng("demand", day, seed)
    category = rng.choice(["grocery", "beverages", "household", "snacks", "frozen"], rows)
    store_type = rng.choice(["urban", "suburban", "rural"], rows, p=[0.45, 0.35, 0.2])
    region = rng.choice(["north", "south", "east", "west"], rows)
    base_price = {"grocery": 4.0, "beverages": 2.5, "household": 8.0, "snacks": 3.0, "frozen": 6.0}
    list_price = np.array([base_price[c] for c in category]) * rng.uniform(0.7, 1.4, rows)
    promo = (rng.random(rows) < 0.15 + 0.25 * drift).astype("int64")
    price = (list_price * np.where(promo == 1, rng.uniform(0.7, 0.9, rows), 1.0) * (1 + 0.3 * drift)).round(2)
    temperature = rng.normal(16 + 8 * np.sin(2 * np.pi * day.timetuple().tm_yday / 365) + 6 * drift, 4, rows)
    weekend = int(day.weekday() >= 5)
    traffic = np.where(store_type == "urban", 1.4, np.where(store_type == "suburban", 1.0, 0.6))
    seasonal = np.where(
        category == "beverages",
        1 + 0.04 * (temperature - 16),
        np.where(category == "frozen", 1 + 0.03 * (temperature - 16), 1.0),
    )
    expected = (
        22 * traffic * seasonal * (1 + 0.6 * promo) * (1 + 0.25 * weekend) * (list_price / price) ** 1.3
    )
    units = rng.poisson(np.clip(expected, 0.1, None)).astype("float64")
    stores = rng.integers(1, 60, rows)
    skus = rng.integers(1000, 1400, rows)
    return pd.DataFrame(
        {
            "row_id": [
                f"{day:%Y%m%d}-{s:03d}-{k}-{i}" for i, (s, k) in enumerate(zip(stores, skus, strict=True))
            ],
            "sale_date": pd.Series([day] * rows, dtype="datetime64[ms]"),
            "store_id": stores.astype("int64"),
            "price": price,
            "list_price": list_price.round(2),
            "promo": promo,
            # Weather feeds drop out now and then.
            "temperature": _with_nulls(rng, temperature.round(1), 0.03),
            "is_weekend": np.full(rows, weekend, dtype="int64"),
            "category": category,
            "store_type": store_type,
            "region": region,
            "units_sold": units,
        }
    )


# --- support_intent: customer-service questions routed to an intent -------------------------------

SUPPORT_INTENTS = ("billing", "technical", "cancellation", "delivery", "account", "returns")
SUPPORT_SHARES = (0.24, 0.24, 0.10, 0.16, 0.14, 0.12)
NEW_INTENT = "warranty"
DRIFT_PRODUCT = "Nimbus Hub"  # never named at drift 0
CHANNELS = ("email", "chat", "phone", "app", "social")
PLANS = ("basic", "plus", "premium", "business")

# Per intent (SUPPORT_INTENTS, then warranty): channel and plan mixes, mean tickets in the last 30 days,
# mean tenure in days. Each carries a little signal; the question carries most of it.
_CHANNEL_P = (
    (0.42, 0.26, 0.12, 0.14, 0.06),  # billing: email
    (0.18, 0.38, 0.24, 0.14, 0.06),  # technical: chat, phone
    (0.30, 0.24, 0.32, 0.10, 0.04),  # cancellation: phone
    (0.20, 0.30, 0.08, 0.28, 0.14),  # delivery: app, social
    (0.24, 0.30, 0.10, 0.30, 0.06),  # account: app
    (0.36, 0.26, 0.08, 0.24, 0.06),  # returns: email, app
    (0.40, 0.22, 0.24, 0.10, 0.04),  # warranty: email, phone
)
_DRIFT_CHANNEL_P = (0.08, 0.52, 0.05, 0.30, 0.05)  # drifted customers write from chat and the app
_PLAN_P = (
    (0.48, 0.27, 0.17, 0.08),
    (0.30, 0.26, 0.24, 0.20),
    (0.50, 0.27, 0.15, 0.08),
    (0.42, 0.30, 0.20, 0.08),
    (0.32, 0.26, 0.20, 0.22),
    (0.40, 0.30, 0.22, 0.08),
    (0.30, 0.30, 0.28, 0.12),
)
_PRIOR_TICKETS = (0.5, 0.9, 1.2, 0.6, 0.45, 0.55, 0.8)
_TENURE_SCALE = (420.0, 400.0, 300.0, 380.0, 460.0, 360.0, 520.0)
# Misrouted tickets (~4 %) land on the intent most often confused with the true one.
_CONFUSED = (2, 4, 0, 5, 1, 3, 5)
_LABEL_NOISE = 0.04
# Tickets per hour of the day: quiet at night, busiest late morning and early evening.
_HOURS = (1, 1, 1, 1, 1, 2, 3, 5, 7, 9, 10, 10, 9, 9, 9, 8, 8, 8, 9, 9, 8, 6, 4, 2)

_PRODUCTS = (
    "Aurora router", "Pulse earbuds", "Vista TV", "Orbit smartwatch", "Nova phone", "Echo speaker",
    "Terra tablet", "Lumen smart bulb", "Atlas laptop", "Breeze air purifier", "Kinetic fitness band",
    "Halo doorbell camera", "Aurora mesh extender", "Vista soundbar",
)  # fmt: skip

# {slot}s are filled per question (see _SLOT_FILLERS); {plan} is the customer's own plan.
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "billing": (
        "I was charged twice for my {plan} plan this month. Can you refund the duplicate charge of {amount}?",
        "Why is my bill {amount} higher than usual? I haven't changed anything on my {plan} plan.",
        "There's a charge of {amount} on my statement, taken {date}, that I don't recognise.",
        "Can I get a copy of my invoice for {month}? I need it for my expense report.",
        "My payment keeps getting declined even though my card is valid. How do I update my payment method?",
        "How do I change the card you bill every month? My old {card} expired.",
        "I upgraded from {other_plan} to {plan} and was charged the full price instead of the prorated amount.",
        "When exactly will I be billed for the {plan} plan? My billing date seems to have moved.",
        "I was promised a discount of {amount} but it wasn't applied to my last invoice.",
        "Can you explain the extra fee of {amount} on my latest bill?",
        "Is VAT included in the price of the {plan} plan? My invoice shows a tax line I don't understand.",
        "I'd like to switch to annual billing to save money. How does that work for the {plan} plan?",
        "You charged my {card} {amount} for a protection add-on for the {product} that I never ordered.",
        "My invoice still shows my old company address. Can the billing details be corrected?",
        "The autopay failed and now there's a late fee of {amount} on my account. Can it be waived?",
        "I paid {amount} {date} but my balance still shows as outstanding.",
        "Do you accept PayPal or bank transfer for the monthly payment?",
        "I got a receipt for {amount} but my bank shows a different amount was taken.",
        "The price of my {plan} plan went up without any notice, why am I paying {amount} now?",
        "I was billed for the {product} financing twice {date}.",
    ),
    "technical": (
        "My {product} keeps disconnecting from the wifi every few minutes. I already restarted it.",
        "The {product} won't turn on anymore, the light just blinks {light}.",
        "After the latest firmware update my {product} is really slow and keeps freezing.",
        "I get {error} when I try to pair the {product} with the app.",
        "The app crashes every time I open the settings page for my {product}.",
        "How do I factory reset the {product}? The manual doesn't explain it.",
        "My {product} won't connect over bluetooth to my phone anymore.",
        "The sound on my {product} cuts out every few seconds.",
        "Setup gets stuck at 90% when I install the {product}. What am I doing wrong?",
        "The {product} battery drains in a couple of hours, it used to last all day.",
        "The screen on my {product} flickers whenever I change the brightness.",
        "I can't get the {product} to sync with the mobile app, it just says device offline.",
        "Is there a fix for the overheating issue on the {product}? It gets very hot.",
        "The internet speed through my {product} is way below what I'm paying for.",
        "The update on my {product} failed with {error} and now it's stuck in a boot loop.",
        "Voice commands on my {product} stopped working {date}.",
        "How do I set up parental controls and port forwarding on the {product}?",
        "Notifications from the app don't come through anymore for my {product}.",
        "My {product} shows {error} on startup, what does that mean?",
        "The {product} randomly reboots at night and loses all its settings.",
    ),
    "cancellation": (
        "I want to cancel my {plan} subscription, effective immediately.",
        "How do I cancel my plan? I can't find the option anywhere in the app.",
        "Please close my contract and stop all future payments.",
        "I'd like to end my {plan} contract at the end of this billing period.",
        "What's the cancellation fee if I leave before my contract ends?",
        "I'm moving abroad next month and need to terminate my {plan} service.",
        "Cancel my membership please, I no longer use the {product}.",
        "I signed up for the free trial by mistake, please cancel it before I get charged.",
        "Can I pause my subscription for {n} months instead of cancelling it?",
        "I cancelled {date} but you still charged me {amount}, please confirm the cancellation went through.",
        "I found a cheaper offer elsewhere, so I want to cancel unless you can match it.",
        "Please don't renew my {plan} plan, I want to unsubscribe.",
        "How much notice do I need to give to cancel the {plan} plan?",
        "I don't want to downgrade to {other_plan}, just cancel everything.",
        "Stop my auto-renewal and cancel the service, I'm not happy with it.",
        "Is there a way to cancel online or do I really have to call you?",
        "My contract runs out {soon} and I do not want to extend it.",
        "I want to terminate the {plan} subscription for the {product}, it's not worth the money.",
    ),
    "delivery": (
        "Where is my order {order}? It was supposed to arrive {date}.",
        "The tracking for order {order} hasn't updated in {n} days.",
        "My package says delivered but I never received it.",
        "Can I change the delivery address for order {order}? I'm moving.",
        "The {product} I ordered still hasn't shipped. When will it be dispatched?",
        "{carrier} says they attempted delivery but nobody rang the bell.",
        "How long does shipping to Canada take for the {product}?",
        "My order {order} arrived with only one of the two items, the {product} is missing.",
        "Can I pick up my {product} at a store instead of home delivery?",
        "The courier left my parcel with a neighbour I don't know. Order {order}.",
        "Is express shipping available for the {product}? I need it {soon}.",
        "Order {order} has been stuck in customs for a week, what should I do?",
        "The delivery estimate keeps moving back. I ordered the {product} {date}.",
        "Can you reschedule the delivery of order {order} to the weekend?",
        "I got a shipping confirmation but the tracking number doesn't work on the {carrier} site.",
        "My box arrived crushed, the {product} inside looks fine but I'm worried.",
        "Why was my order {order} shipped with {carrier} instead of express?",
        "The {carrier} driver delivered my {product} to the wrong address.",
    ),
    "account": (
        "I can't log in to my account, it says my password is wrong even after resetting it.",
        "How do I change the email address on my account?",
        "I never received the password reset email.",
        "My account got locked after too many login attempts. Can you unlock it?",
        "Someone else may have accessed my account, I see a login from another country.",
        "How do I turn on two-factor authentication?",
        "I want to change the name on my profile, it's spelled wrong.",
        "Can I merge my two accounts into one? The {product} is registered on the other one.",
        "I lost the phone number I used for verification codes, how do I get back in?",
        "How do I add a family member to my {plan} account?",
        "Please delete my personal data from your systems, this is a GDPR request.",
        "The verification code never arrives by SMS.",
        "I want to update my phone number and home address in my profile.",
        "How can I download a copy of all the data you hold about me?",
        "My account shows someone else's name and orders, I think there's a mix-up.",
        "How do I remove the {product} from my account so I can sell it?",
        "The login page keeps sending me back to the sign in screen.",
        "I changed my email {date} and now I can't sign in with either address.",
    ),
    "returns": (
        "I'd like to return the {product}, {reason}. How do I get a return label?",
        "What's your return policy for the {product}? I bought it {date}.",
        "I sent back order {order} {n} days ago but still haven't got my refund.",
        "Can I exchange the {product} for a different colour?",
        "The {product} arrived damaged, I want to send it back for a replacement.",
        "How do I return an item I got as a gift without a receipt?",
        "The return portal says order {order} isn't eligible for return. Why?",
        "I received the wrong item instead of the {product}, how do I return it?",
        "Do I have to pay for return shipping on the {product}?",
        "You received my return {date}, when will the {amount} be refunded?",
        "Can I drop off my return at a store or does it have to be posted?",
        "I returned the {product} but you refunded only part of the price.",
        "Is it too late to return the {product}? It's been {n} weeks.",
        "I want to send back the {product}, {reason}, and get my money back.",
        "The return label you emailed has expired, can you send a new one?",
        "I'd like a refund for order {order}, {reason}.",
    ),
    "warranty": (
        "Is my {product} still under warranty? I bought it {date}.",
        "I'd like to make a warranty claim, the {product} stopped working after {n} months.",
        "Does the warranty cover water damage on the {product}?",
        "How do I register my {product} for the extended warranty?",
        "Which serial number do you need for a warranty repair of the {product}?",
        "My {product} has a manufacturing defect, will the guarantee cover the repair?",
        "Can I still buy extended protection for the {product} after the purchase?",
        "The warranty repair of my {product} is taking {n} weeks, any update on the RMA?",
        "Is the warranty transferable if I sell my {product}?",
        "Do I need the original receipt to claim the two-year guarantee on the {product}?",
        "My warranty replacement {product} has the same fault as the first one.",
        "How long is the manufacturer's warranty on a refurbished {product}?",
        "Will opening the {product} myself void the warranty?",
        "My warranty expired last month, can you still repair the {product} for free?",
    ),
}
_SHORT: dict[str, tuple[str, ...]] = {
    "billing": (
        "double charged??", "wrong amount on my bill", "need my invoice for {month}", "refund the duplicate payment",
        "update my payment card", "why was I charged {amount}", "billing question", "invoice missing",
    ),
    "technical": (
        "{product} not working", "wifi keeps dropping", "app keeps crashing", "{error} on my {product}",
        "{product} won't turn on", "how to reset the {product}?", "{product} keeps freezing",
    ),
    "cancellation": (
        "cancel my subscription", "cancel please", "how do I cancel", "end my contract",
        "stop auto renewal", "unsubscribe me", "cancel the {plan} plan",
    ),
    "delivery": (
        "where is my order", "order {order} status?", "package not delivered", "tracking not updating",
        "when will my {product} ship", "parcel missing",
    ),
    "account": (
        "can't log in", "forgot my password", "reset password", "change my email", "account locked",
        "2fa not working", "login problem",
    ),
    "returns": (
        "how do I return this", "return label please", "refund for my return?", "exchange the {product}",
        "wrong item received", "return the {product}",
    ),
    "warranty": ("warranty claim", "is this under warranty", "{product} warranty?", "extended warranty info"),
}  # fmt: skip
_DETAILS: dict[str, tuple[str, ...]] = {
    "billing": (
        "I've been a customer for years and this never happened before.", "My customer number is {acct}.",
        "The charge went through {date}.", "I can send you the bank statement if you need it.",
        "This is the second month in a row the amount is wrong.",
    ),
    "technical": (
        "I've tried turning it off and on again.", "It's on firmware {firmware}.",
        "It was fine until the update {date}.", "I already reinstalled the app twice.",
        "Other devices in the house work fine.", "I followed every step in the troubleshooting guide.",
    ),
    "cancellation": (
        "I've been with you since {year} but the price went up too much.", "I just don't need the service anymore.",
        "Please send me a written confirmation.", "My customer number is {acct}.",
    ),
    "delivery": (
        "I've been waiting at home all day.", "The tracking page just says in transit.",
        "It's a birthday present for {soon}.", "The order number is {order}.",
    ),
    "account": (
        "I use the same email as always.", "I already checked my spam folder.",
        "I'm worried about the security of my data.", "My customer number is {acct}.",
    ),
    "returns": (
        "It's still in the original packaging.", "I still have the receipt.", "I bought it {date}.",
        "The order number is {order}.",
    ),
    "warranty": (
        "I have the original receipt.", "The serial number is {serial}.", "It was never dropped or damaged.",
        "It's been repaired once already.",
    ),
}  # fmt: skip
# A second, minor request from another intent: the label stays the main one.
_ASIDES: dict[str, tuple[str, ...]] = {
    "billing": ("also I think I was overcharged last month", "and why is my bill so high this month?"),
    "technical": ("also the app keeps crashing", "the {product} has been slow lately too"),
    "cancellation": ("otherwise I'll just cancel", "honestly I'm thinking about cancelling"),
    "delivery": ("also my other order hasn't arrived yet", "and where is the replacement you shipped?"),
    "account": ("also I can't log in to check", "btw I can't reset my password either"),
    "returns": ("or should I just return it?", "maybe I'll send it back for a refund"),
    "warranty": ("is it still under warranty?", "hopefully the warranty covers it"),
}
# Questions that say little about their intent (the label comes from the ticket's routing).
_VAGUE = (
    "Hi, I have a problem with my {product}, can someone call me?", "need help asap",
    "hello?? anyone there", "I have a question about my {plan} plan.", "Please contact me about order {order}.",
    "It's still not right, please fix it.", "Still waiting for an answer to my last email.",
    "Same issue as before.", "Can I speak to a manager please?", "Your service is a joke.",
    "I have an issue with the {product}.", "Please call me back today.",
)  # fmt: skip
# Long, intent-neutral background some customers give.
_CONTEXT = (
    "I've called three times already and every agent told me something different, so I'm putting it in "
    "writing this time.",
    "I have been a loyal customer for many years and I have always recommended you to friends and family, "
    "which is why this is so disappointing.",
    "I bought the {product} together with a few other things for my parents, who are not very good with "
    "technology, so I'm handling this for them.",
    "I tried the help centre articles and the chatbot first but neither of them covered my situation.",
    "I work night shifts so a reply by email is much better for me than a phone call during the day.",
)
_GREETINGS = (
    "Hi,", "Hello,", "Hey,", "Hi there,", "Good morning,", "Good afternoon,", "Dear support team,",
    "Hello team,", "Hiya!", "Hi!", "Hey there -", "Dear Sir or Madam,",
)  # fmt: skip
_URGENCY = (
    "This is urgent.", "I need this sorted today.", "Please respond ASAP.", "This is the third time I'm writing.",
    "I'm getting really frustrated.", "Please help, I'm desperate.", "No rush.", "Quick reply appreciated.",
)  # fmt: skip
_SIGNOFFS = (
    "Thanks", "Thank you!", "Cheers", "Best regards", "Thanks in advance.", "Kind regards, {name}",
    "Regards, {name}", "Thx", "{name}", "Many thanks, {name}", "Any help is appreciated.",
)  # fmt: skip
_OFF_TOPIC = (
    "By the way, I love the new website.", "Sorry if this is the wrong place to ask.",
    "I'm typing this on my phone.", "The weather here is awful today, haha.", "My cousin recommended your shop.",
    "I hope you're having a good day.", "Sorry for my English.", "I was on hold for 40 minutes before writing this.",
    "Your chatbot couldn't answer this.", "I'm writing on behalf of my mother.",
)  # fmt: skip
# Chat-style wording of drifted questions: new tokens for words the model learned.
_CHAT = {
    "please": "pls", "you": "u", "your": "ur", "you're": "ur", "thanks": "thx", "thank you": "ty",
    "because": "bc", "account": "acct", "subscription": "sub", "information": "info",
    "as soon as possible": "asap", "are": "r", "message": "msg", "really": "rly", "tomorrow": "tmrw",
    "today": "2day", "before": "b4", "password": "pw", "with": "w/", "don't": "dont", "can't": "cant",
    "won't": "wont", "i'm": "im", "doesn't": "doesnt", "haven't": "havent", "isn't": "isnt",
    "problem": "prob", "order": "ordr", "delivery": "deliv", "warranty": "wrnty", "cancel": "cxl",
    "invoice": "inv", "return": "rtn", "refund": "rfnd", "working": "workin", "what": "wat",
}  # fmt: skip
_CHAT_RE = re.compile(
    r"\b(" + "|".join(re.escape(k) for k in sorted(_CHAT, key=len, reverse=True)) + r")\b", re.I
)
_CHAT_TAILS = ("", "", " ??", " plz help", " thx", " :(", " asap", " lol")
_REASONS = (
    "it doesn't fit", "it arrived scratched", "I changed my mind", "it's the wrong colour",
    "I ordered the wrong model", "it stopped working after a week",
)  # fmt: skip
_NEAR_KEYS = "qwertyuiopasdfghjklzxcvbnm"
_NAMES = ("Sam", "Maria", "J.", "Tom", "Aisha", "Lukas", "Priya", "Chen", "Olga", "Dave", "Fatima", "Marco")
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
)  # fmt: skip


def _amount(r: random.Random) -> str:
    value = r.choice((4.99, 9.99, 12.5, 14.99, 19.99, 24.0, 29.99, 39.0, 49.99, 59.0, 79.99, 129.0, 249.0))
    return r.choice(("${:.2f}", "€{:.2f}", "{:.2f} USD", "£{:.0f}", "${:.0f}")).format(
        value + r.randint(0, 40)
    )


def _date(r: random.Random) -> str:
    if r.random() < 0.5:
        return r.choice(
            ("yesterday", "last Tuesday", "two days ago", "last week", "on Monday", "this morning")
        )
    d = r.randint(1, 28)
    return r.choice(
        (f"on {r.choice(_MONTHS)} {d}", f"on the {_ordinal(d)}", f"on {d:02d}/{r.randint(1, 12):02d}")
    )


def _soon(r: random.Random) -> str:
    if r.random() < 0.6:
        return r.choice(("tomorrow", "Friday", "next week", "the weekend", "Monday", "the end of the month"))
    return f"{r.choice(_MONTHS)} {r.randint(1, 28)}"


def _ordinal(d: int) -> str:
    return f"{d}{'th' if 10 <= d % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"


_SLOT_FILLERS: dict[str, Callable[[random.Random], str]] = {
    "product": lambda r: r.choice(_PRODUCTS),
    "order": lambda r: r.choice(("#{}", "{}", "ORD-{}")).format(r.randint(10_000_000, 99_999_999)),
    "amount": _amount,
    "date": _date,
    "soon": _soon,
    "month": lambda r: r.choice(_MONTHS),
    "other_plan": lambda r: r.choice(("Basic", "Plus", "Premium", "Business")),
    "card": lambda r: r.choice(("Visa", "Mastercard", "debit card", "credit card", "Amex")),
    "light": lambda r: r.choice(("red", "orange", "white", "blue")),
    "error": lambda r: r.choice(("error {}", "error code E-{}", "code 0x8007{}", "ERR_{}")).format(
        r.randint(100, 999)
    ),
    "n": lambda r: str(r.randint(2, 12)),
    "carrier": lambda r: r.choice(("UPS", "DHL", "FedEx", "The courier", "USPS", "DPD")),
    "reason": lambda r: r.choice(_REASONS),
    "acct": lambda r: f"{r.randint(100_000, 999_999)}",
    "firmware": lambda r: f"{r.randint(1, 4)}.{r.randint(0, 9)}.{r.randint(0, 30)}",
    "year": lambda r: str(r.randint(2012, 2024)),
    "serial": lambda r: f"SN{r.randint(10**9, 10**10 - 1)}",
    "name": lambda r: r.choice(_NAMES),
}


class _Slots(dict[str, str]):
    """Slot values of one question, drawn when a template first asks for them (then reused)."""

    def __init__(self, r: random.Random, **fixed: str) -> None:
        super().__init__(fixed)
        self.r = r

    def __missing__(self, key: str) -> str:
        value = self[key] = _SLOT_FILLERS[key](self.r)
        return value


def _typo(r: random.Random, w: str) -> str:
    """A swapped, dropped, doubled or neighbouring letter somewhere in ``w``."""
    j = r.randrange(len(w) - 2)
    op = r.random()
    if op < 0.4:
        return w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    if op < 0.7:
        return w[:j] + w[j + 1 :]
    if op < 0.85:
        return w[:j] + w[j] + w[j:]
    return w[:j] + r.choice(_NEAR_KEYS) + w[j + 1 :]


def _typos(r: random.Random, text: str) -> str:
    """About 8 % of the words (of four letters or more) get a typo."""
    return " ".join(
        _typo(r, w) if len(w) > 3 and w[0].isalpha() and r.random() < 0.08 else w for w in text.split(" ")
    )


def _chat_style(r: random.Random, text: str) -> str:
    text = _CHAT_RE.sub(lambda m: _CHAT[m.group(0).lower()], text)
    return text.lower().rstrip(".!") + r.choice(_CHAT_TAILS)


def _question(r: random.Random, intent: str, plan: str, drifted: bool) -> str:
    """One question for ``intent``: a template with its slots filled, wrapped and roughened."""
    slots = _Slots(r, plan=plan.capitalize(), **({"product": DRIFT_PRODUCT} if drifted else {}))
    kind = r.random()
    if kind < 0.06:  # says little about the intent
        parts = [r.choice(_VAGUE).format_map(slots)]
        short = True
    elif kind < 0.17:
        parts = [r.choice(_SHORT[intent]).format_map(slots)]
        short = True
    else:
        parts = [r.choice(_TEMPLATES[intent]).format_map(slots)]
        short = False
        if r.random() < 0.35:
            parts.append(r.choice(_DETAILS[intent]).format_map(slots))
        mixed = r.random()
        if mixed < 0.2:  # a second intent, in passing or as a second request: the label stays the main one
            other = r.randrange(len(SUPPORT_INTENTS))
            if other == _INTENT_INDEX[intent] or r.random() < 0.6:
                other = _CONFUSED[_INTENT_INDEX[intent]]
            if mixed < 0.14:  # asides bring their own connective
                parts.append(r.choice(_ASIDES[_ALL_INTENTS[other]]).format_map(slots))
            else:
                second = r.choice(_SHORT[_ALL_INTENTS[other]]).format_map(slots)
                parts.append(r.choice(("Also: ", "And one more thing: ", "P.S. ", "Oh and also ")) + second)
        if r.random() < 0.1:
            parts.insert(r.randrange(1, len(parts) + 1), r.choice(_CONTEXT).format_map(slots))
        if r.random() < 0.15:
            parts.append(r.choice(_URGENCY))
    if r.random() < 0.07:
        parts.insert(r.randrange(len(parts) + 1), r.choice(_OFF_TOPIC))
    if r.random() < (0.15 if short else 0.55):
        greeting = r.choice(_GREETINGS)
        if greeting.endswith(",") and r.random() < 0.5:
            parts[0] = parts[0][:1].lower() + parts[0][1:]
        parts.insert(0, greeting)
    if r.random() < (0.1 if short else 0.35):
        parts.append(r.choice(_SIGNOFFS).format_map(slots))
    text = " ".join(parts)
    if drifted:
        if DRIFT_PRODUCT not in text:
            text = r.choice(("re my {0}: {1}", "{1} (it's the {0})", "{0} owner here. {1}")).format(
                DRIFT_PRODUCT, text
            )
        text = _chat_style(r, text)
    if r.random() < 0.3:
        text = _typos(r, text)
    case = r.random()
    if case < 0.12:
        text = text.lower()
    elif case < 0.14:
        text = text.upper()
    elif case < 0.2:
        text = text.rstrip(".?!")
    return text


_ALL_INTENTS = (*SUPPORT_INTENTS, NEW_INTENT)
_INTENT_INDEX = {name: i for i, name in enumerate(_ALL_INTENTS)}


def support_intent_batch(
    day: dt.date, rows: int, *, seed: int = 0, drift: float = 0.0, new_intent: float = 0.0
) -> pd.DataFrame:
    """Customer-service questions received on ``day``; ``intent`` is the team the ticket was routed to.

    The ``question`` text carries most of the signal (templates with slot fillers, greetings, typos,
    off-topic and two-intent questions, ~4 % misrouted labels); ``channel``, ``plan`` and
    ``prior_tickets_30d`` a little. ``drift`` is a vocabulary shift: that share of questions is about
    a new product (``DRIFT_PRODUCT``) in chat-style wording, and comes more often from chat and the
    app, while the intents keep their shares. ``new_intent`` is that share of questions of a new
    intent, ``warranty``, with its own wording."""
    import numpy as np
    import pandas as pd

    rng = _rng("support_intent", day, seed)
    intent = rng.choice(len(SUPPORT_INTENTS), rows, p=SUPPORT_SHARES)
    intent = np.where(rng.random(rows) < new_intent, len(SUPPORT_INTENTS), intent)
    drifted = rng.random(rows) < drift

    def pick(p: np.ndarray) -> np.ndarray:  # one category per row from per-row probabilities
        return (rng.random(rows)[:, None] > np.cumsum(p, axis=1)[:, :-1]).sum(axis=1)

    channel_p = np.asarray(_CHANNEL_P)[intent]
    channel_p = np.where(drifted[:, None], 0.4 * channel_p + 0.6 * np.asarray(_DRIFT_CHANNEL_P), channel_p)
    channel = np.asarray(CHANNELS)[pick(channel_p)]
    plan = np.asarray(PLANS)[pick(np.asarray(_PLAN_P)[intent])]
    tenure = np.clip(rng.gamma(1.3, np.asarray(_TENURE_SCALE)[intent]), 0, 3650).round().astype("int64")
    prior = rng.poisson(np.asarray(_PRIOR_TICKETS)[intent]).astype("int64")
    hours = rng.choice(24, rows, p=np.asarray(_HOURS) / sum(_HOURS))
    offset_ms = hours * 3_600_000 + rng.integers(0, 3_600_000, rows)
    created = np.datetime64(day.isoformat(), "ms") + offset_ms.astype("timedelta64[ms]")
    label = np.where(rng.random(rows) < _LABEL_NOISE, np.asarray(_CONFUSED)[intent], intent)
    r = random.Random(int(rng.integers(2**63)))
    questions = [
        _question(r, _ALL_INTENTS[i], p, d)
        for i, p, d in zip(intent.tolist(), plan.tolist(), drifted.tolist(), strict=True)
    ]
    return pd.DataFrame(
        {
            "ticket_id": [f"T{day:%Y%m%d}-{i:06d}" for i in range(rows)],
            "created_at": pd.Series(created, dtype="datetime64[ms]"),
            "question": questions,
            "channel": channel,
            "plan": plan,
            "tenure_days": tenure,
            "prior_tickets_30d": prior,
            "intent": np.asarray(_ALL_INTENTS)[label],
        }
    )


def _damage_text(rng: np.random.Generator, values: list[str], n: int) -> list[str]:
    """``n`` questions broken in turn: empty, over 2,000 characters, mojibake with control characters."""
    out = list(values)
    for j, i in enumerate(rng.choice(len(out), min(n, len(out)), replace=False).tolist()):
        q = out[i] or "hello"
        if j % 3 == 0:
            out[i] = ""
        elif j % 3 == 1:
            out[i] = q + " Here is the log: " + "ERR 0x80070005 net.core timeout retry=3; " * (2000 // 40 + 1)
        else:
            chars = list(q.replace("'", "\u00e2\u20ac\u2122"))
            for p in rng.choice(len(chars), min(3, len(chars)), replace=False).tolist():
                chars[p] = "\ufffd"
            chars.insert(int(rng.integers(0, len(chars) + 1)), "\x00\x1b[0m")
            out[i] = "".join(chars) + "\x07"
    return out


GENERATORS: dict[str, tuple[Callable[..., pd.DataFrame], str, str, str]] = {
    # name: (function, key column, target, a numeric column to corrupt)
    "churn": (churn_batch, "customer_id", "churned", "monthly_charges"),
    "demand": (demand_batch, "row_id", "units_sold", "price"),
    "support_intent": (support_intent_batch, "ticket_id", "intent", "tenure_days"),
}
# Free-text columns: corrupt damages their text and never writes "???" into them.
TEXT_COLUMNS: dict[str, str] = {"support_intent": "question"}


def generate_batch(
    generator: str,
    day: dt.date,
    rows: int,
    *,
    seed: int = 0,
    drift: float = 0.0,
    corrupt: bool = False,
    shuffle_labels: bool = False,
    degrade: float = 0.0,
    new_intent: float = 0.0,
) -> pd.DataFrame:
    """One day of ``generator`` data, reproducible from (day, seed, options); ``ValueError`` on bad input.

    ``corrupt`` damages about 5 % of the rows (and, for a text column, about 5 % of the texts:
    empty, over 2,000 characters, or mojibake with control characters); ``shuffle_labels``
    permutes the target; ``degrade`` (churn) is a concept shift in a segment (see ``churn_batch``);
    ``new_intent`` (support_intent) is the share of questions of a new intent, ``warranty``."""
    import pandas as pd

    if generator not in GENERATORS:
        raise ValueError(f"unknown generator {generator!r}; choose one of {sorted(GENERATORS)}")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be between 0 and 1, got {drift}")
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}")
    if not 0.0 <= degrade <= 1.0:
        raise ValueError(f"degrade must be between 0 and 1, got {degrade}")
    if not 0.0 <= new_intent <= 1.0:
        raise ValueError(f"new_intent must be between 0 and 1, got {new_intent}")
    fn, key, target, numeric = GENERATORS[generator]
    if degrade and fn is not churn_batch:
        raise ValueError(f"degrade is a concept shift of the churn generator; {generator!r} has none")
    if new_intent and fn is not support_intent_batch:
        raise ValueError(f"new_intent adds an intent to the support_intent generator; {generator!r} has none")
    extra = {"degrade": degrade} if degrade else {"new_intent": new_intent} if new_intent else {}
    df = fn(day, rows, seed=seed, drift=drift, **extra)
    text = TEXT_COLUMNS.get(generator)
    rng = _rng(generator + "-options", day, seed)
    if shuffle_labels:
        df[target] = rng.permutation(df[target].to_numpy())
    if corrupt:
        n = max(1, rows // 20)
        idx = rng.choice(rows, n, replace=False)
        df.loc[idx, numeric] = -df.loc[idx, numeric].abs() - 1000.0
        df[key] = df[key].astype("object")
        df.loc[idx[: max(1, n // 2)], key] = None
        cat = next(c for c in df.columns if pd.api.types.is_string_dtype(df[c]) and c not in (key, text))
        df.loc[idx[: max(1, n // 3)], cat] = "???"
        if text is not None:
            damaged = _damage_text(rng, df[text].tolist(), n)
            df[text] = pd.Series(damaged, index=df.index).astype(df[text].dtype)
    return df

"""Tools of the travel domain: a trip-planning assistant over cached travel data.

Flights, flight status, hotels, weather forecasts, exchange rates, attractions, visa rules and
local times come from tables filled from cached provider answers (TravelBench-style: the data is
fixed, so every run sees the same world). Forecasts only exist for the next 7 days and flight
status reports only up to the world clock, so some answers change as time passes. Bookings are
the only writes; their ids are built from what they book, so the same bookings made in another
order give the same database.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from palaestra.envs.service import ToolContext, ToolError, tool
from palaestra.envs.service.toolkit import arithmetic

FORECAST_DAYS = 7
CANCEL_CUTOFF_HOURS = 24


def _day(text: str, label: str = "date") -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ToolError(f"{label} must look like YYYY-MM-DD, got {text!r}") from None


def _airport(ctx: ToolContext, code: str) -> dict[str, Any]:
    row = ctx.one("SELECT * FROM airports WHERE code = ?", (code.strip().upper(),))
    if row is None:
        raise ToolError(
            f"no data for airport {code!r}; use a 3-letter code such as JFK (see list_destinations)"
        )
    return row


def _city(ctx: ToolContext, city: str) -> dict[str, Any]:
    row = ctx.one("SELECT * FROM cities WHERE lower(name) = ?", (city.strip().lower(),))
    if row is None:
        raise ToolError(f"no data for city {city!r} (see list_destinations)")
    return row


def _traveler(ctx: ToolContext, traveler_id: str) -> dict[str, Any]:
    row = ctx.one("SELECT * FROM travelers WHERE traveler_id = ?", (traveler_id,))
    if row is None:
        raise ToolError(f"traveler {traveler_id!r} not found")
    return row


def _departure_utc(ctx: ToolContext, flight: dict[str, Any]) -> datetime:
    origin = _airport(ctx, flight["origin"])
    local = datetime.fromisoformat(f"{flight['date']}T{flight['depart_local']}:00").replace(tzinfo=UTC)
    return local - timedelta(hours=origin["utc_offset"])


# ----- reads -----------------------------------------------------------------------------------
@tool
def list_destinations(ctx: ToolContext) -> list[dict[str, Any]]:
    """List the cities and airports this assistant has data for."""
    return ctx.all(
        "SELECT c.name AS city, c.country, a.code AS airport "
        "FROM cities c LEFT JOIN airports a ON a.city = c.name ORDER BY c.name"
    )


@tool
def get_traveler(ctx: ToolContext, email: str) -> dict[str, Any]:
    """Get a traveler's profile and bookings by their email address.

    Args:
        email: The traveler's email address.
    """
    row = ctx.one("SELECT * FROM travelers WHERE email = ?", (email.strip().lower(),))
    if row is None:
        raise ToolError(f"no traveler with email {email!r}")
    bookings = ctx.all(
        "SELECT booking_id, kind, reference, start_date, end_date, cabin, passengers, rooms, total_price, "
        "status FROM bookings WHERE traveler_id = ? ORDER BY start_date, booking_id",
        (row["traveler_id"],),
    )
    return {**row, "bookings": bookings}


@tool
def search_flights(ctx: ToolContext, origin: str, destination: str, date: str) -> list[dict[str, Any]]:
    """Search direct flights between two airports on a date (local departure times, USD prices per
    passenger, seats left per cabin).

    Args:
        origin: The departure airport code, such as 'JFK'.
        destination: The arrival airport code, such as 'LHR'.
        date: The departure date, YYYY-MM-DD.
    """
    _airport(ctx, origin)
    _airport(ctx, destination)
    day = _day(date)
    rows = ctx.all(
        "SELECT flight_number, airline, date, origin, destination, depart_local, arrive_local, duration_min, "
        "price_economy, seats_economy, price_business, seats_business FROM flights "
        "WHERE origin = ? AND destination = ? AND date = ? ORDER BY depart_local",
        (origin.strip().upper(), destination.strip().upper(), day.isoformat()),
    )
    if not rows:
        raise ToolError(
            f"no direct flights from {origin.upper()} to {destination.upper()} on {day.isoformat()}"
        )
    return rows


@tool
def get_flight_status(ctx: ToolContext, flight_number: str, date: str) -> dict[str, Any]:
    """Get the latest status of a flight (on time, delayed, boarding, departed, cancelled) and its gate.

    Args:
        flight_number: The flight number, such as 'NW208'.
        date: The flight's departure date, YYYY-MM-DD.
    """
    flight = ctx.one(
        "SELECT * FROM flights WHERE flight_number = ? AND date = ?",
        (flight_number.strip().upper(), _day(date).isoformat()),
    )
    if flight is None:
        raise ToolError(f"no flight {flight_number!r} on {date}")
    now = ctx.now_datetime.strftime("%Y-%m-%dT%H:%M:%SZ")
    report = ctx.one(
        "SELECT status, gate, delay_min, as_of FROM flight_status "
        "WHERE flight_number = ? AND date = ? AND as_of <= ? ORDER BY as_of DESC LIMIT 1",
        (flight["flight_number"], flight["date"], now),
    )
    if report is None:
        return {
            "flight_number": flight["flight_number"],
            "date": flight["date"],
            "status": "scheduled",
            "scheduled_departure_local": flight["depart_local"],
            "gate": None,
            "delay_min": 0,
        }
    return {
        "flight_number": flight["flight_number"],
        "date": flight["date"],
        "scheduled_departure_local": flight["depart_local"],
        **report,
    }


@tool
def search_hotels(
    ctx: ToolContext, city: str, check_in: str, check_out: str, max_price_per_night: float | None = None
) -> list[dict[str, Any]]:
    """Search hotels with free rooms in a city for a stay (USD prices per room and night).

    Args:
        city: The city, such as 'Rome'.
        check_in: The arrival date, YYYY-MM-DD.
        check_out: The departure date, YYYY-MM-DD (after check_in).
        max_price_per_night: Only hotels at or under this price (USD), if given.
    """
    _city(ctx, city)
    start, end = _day(check_in, "check_in"), _day(check_out, "check_out")
    if end <= start:
        raise ToolError("check_out must be after check_in")
    rows = ctx.all(
        "SELECT hotel_id, name, stars, rating, price_per_night, rooms_available, distance_km_center, "
        "amenities FROM hotels WHERE lower(city) = ? AND rooms_available > 0 "
        "AND (? IS NULL OR price_per_night <= ?) ORDER BY price_per_night",
        (city.strip().lower(), max_price_per_night, max_price_per_night),
    )
    nights = (end - start).days
    for row in rows:
        row["nights"] = nights
        row["total_price"] = round(row["price_per_night"] * nights, 2)
    return rows


@tool
def get_weather_forecast(ctx: ToolContext, city: str, date: str) -> dict[str, Any]:
    """Get the weather forecast for a city on a date (forecasts exist for today and the next 7 days).

    Args:
        city: The city, such as 'Paris'.
        date: The date, YYYY-MM-DD.
    """
    place = _city(ctx, city)
    day = _day(date)
    today = ctx.now_datetime.date()
    if day < today:
        raise ToolError(f"{day.isoformat()} is in the past; only forecasts are available")
    if day > today + timedelta(days=FORECAST_DAYS):
        raise ToolError(
            f"no forecast for {day.isoformat()} yet: forecasts cover up to {FORECAST_DAYS} days ahead "
            f"(until {(today + timedelta(days=FORECAST_DAYS)).isoformat()})"
        )
    row = ctx.one(
        "SELECT summary, high_c, low_c, precipitation_chance FROM weather WHERE city = ? AND date = ?",
        (place["name"], day.isoformat()),
    )
    if row is None:
        raise ToolError(f"no forecast for {place['name']} on {day.isoformat()}")
    return {"city": place["name"], "date": day.isoformat(), **row}


@tool
def get_exchange_rate(ctx: ToolContext, from_currency: str, to_currency: str) -> dict[str, Any]:
    """Get today's exchange rate between two currencies (ISO codes such as USD, EUR, GBP, JPY).

    Args:
        from_currency: The currency to convert from.
        to_currency: The currency to convert to.
    """
    base, quote = from_currency.strip().upper(), to_currency.strip().upper()
    rates = {r["currency"]: r["per_usd"] for r in ctx.all("SELECT currency, per_usd FROM exchange_rates")}
    for code in (base, quote):
        if code not in rates:
            raise ToolError(f"no rate for {code!r}; known currencies: {', '.join(sorted(rates))}")
    return {"from": base, "to": quote, "rate": round(rates[quote] / rates[base], 6)}


@tool
def search_attractions(
    ctx: ToolContext,
    city: str,
    category: Literal["museum", "landmark", "park", "food", "tour"] | None = None,
) -> list[dict[str, Any]]:
    """Search attractions in a city (entry price in USD, rating out of 5).

    Args:
        city: The city, such as 'Amsterdam'.
        category: Only this kind of attraction, if given.
    """
    place = _city(ctx, city)
    return ctx.all(
        "SELECT name, category, price_usd, rating, hours FROM attractions "
        "WHERE city = ? AND (? IS NULL OR category = ?) ORDER BY rating DESC, name",
        (place["name"], category, category),
    )


@tool
def get_visa_requirements(ctx: ToolContext, nationality: str, destination_country: str) -> dict[str, Any]:
    """Get the entry requirements for a citizen of one country visiting another (tourism).

    Args:
        nationality: The traveler's citizenship as a country code, such as 'US' or 'IN'.
        destination_country: The country visited, as a country code, such as 'FR'.
    """
    row = ctx.one(
        "SELECT requirement, max_stay_days, notes FROM visa_rules WHERE nationality = ? AND destination = ?",
        (nationality.strip().upper(), destination_country.strip().upper()),
    )
    if row is None:
        raise ToolError(
            f"no visa data for {nationality.upper()} citizens visiting {destination_country.upper()}"
        )
    return {"nationality": nationality.upper(), "destination": destination_country.upper(), **row}


@tool
def get_local_time(ctx: ToolContext, city: str) -> str:
    """Get the current local date and time in a city.

    Args:
        city: The city, such as 'Tokyo'.
    """
    place = _city(ctx, city)
    local = ctx.now_datetime + timedelta(hours=place["utc_offset"])
    return f"{local:%Y-%m-%d %H:%M} in {place['name']} (UTC{place['utc_offset']:+d})"


@tool
def calculate(ctx: ToolContext, expression: str) -> str:
    """Calculate an arithmetic expression (numbers, + - * / and parentheses), rounded to 2 decimals.

    Args:
        expression: The expression, such as '3 * 129.5 + 412'.
    """
    return f"{round(arithmetic(expression), 2):.2f}"


# ----- writes ----------------------------------------------------------------------------------
@tool(write=True)
def book_flight(
    ctx: ToolContext,
    traveler_id: str,
    flight_number: str,
    date: str,
    cabin: Literal["economy", "business"],
    passengers: int,
) -> dict[str, Any]:
    """Book seats on a flight for a traveler, charged to the card on their profile.

    Args:
        traveler_id: The traveler id, such as 'T1004'.
        flight_number: The flight number, such as 'NW102'.
        date: The departure date, YYYY-MM-DD.
        cabin: 'economy' or 'business'.
        passengers: How many seats (1 to 6).
    """
    _traveler(ctx, traveler_id)
    if not 1 <= passengers <= 6:
        raise ToolError("passengers must be between 1 and 6")
    flight = ctx.one(
        "SELECT * FROM flights WHERE flight_number = ? AND date = ?",
        (flight_number.strip().upper(), _day(date).isoformat()),
    )
    if flight is None:
        raise ToolError(f"no flight {flight_number!r} on {date}")
    if _departure_utc(ctx, flight).timestamp() <= ctx.now:
        raise ToolError(f"flight {flight['flight_number']} on {flight['date']} has already departed")
    seats = flight[f"seats_{cabin}"]
    if seats < passengers:
        raise ToolError(f"only {seats} {cabin} seat(s) left on {flight['flight_number']} on {flight['date']}")
    booking_id = f"{traveler_id}-{flight['flight_number']}-{flight['date']}"
    if ctx.one("SELECT 1 AS x FROM bookings WHERE booking_id = ? AND status = 'confirmed'", (booking_id,)):
        raise ToolError(f"the traveler already has booking {booking_id} on this flight")
    total = round(flight[f"price_{cabin}"] * passengers, 2)
    ctx.db.execute(
        f"UPDATE flights SET seats_{cabin} = seats_{cabin} - ? WHERE flight_number = ? AND date = ?",
        (passengers, flight["flight_number"], flight["date"]),
    )
    ctx.db.execute("DELETE FROM bookings WHERE booking_id = ?", (booking_id,))
    ctx.db.execute(
        "INSERT INTO bookings (booking_id, traveler_id, kind, reference, start_date, end_date, cabin, "
        "passengers, rooms, total_price, status) "
        "VALUES (?, ?, 'flight', ?, ?, ?, ?, ?, NULL, ?, 'confirmed')",
        (
            booking_id,
            traveler_id,
            flight["flight_number"],
            flight["date"],
            flight["date"],
            cabin,
            passengers,
            total,
        ),
    )
    return {"booking_id": booking_id, "total_price": total, "status": "confirmed"}


@tool(write=True)
def book_hotel(
    ctx: ToolContext, traveler_id: str, hotel_id: str, check_in: str, check_out: str, rooms: int
) -> dict[str, Any]:
    """Book hotel rooms for a traveler, charged to the card on their profile.

    Args:
        traveler_id: The traveler id.
        hotel_id: The hotel id, such as 'H-ROM-2'.
        check_in: The arrival date, YYYY-MM-DD.
        check_out: The departure date, YYYY-MM-DD.
        rooms: How many rooms (1 to 4).
    """
    _traveler(ctx, traveler_id)
    if not 1 <= rooms <= 4:
        raise ToolError("rooms must be between 1 and 4")
    hotel = ctx.one("SELECT * FROM hotels WHERE hotel_id = ?", (hotel_id.strip().upper(),))
    if hotel is None:
        raise ToolError(f"no hotel {hotel_id!r}")
    start, end = _day(check_in, "check_in"), _day(check_out, "check_out")
    if end <= start:
        raise ToolError("check_out must be after check_in")
    if start < ctx.now_datetime.date():
        raise ToolError(f"check_in {start.isoformat()} is in the past")
    if hotel["rooms_available"] < rooms:
        raise ToolError(f"{hotel['name']} has only {hotel['rooms_available']} room(s) free")
    booking_id = f"{traveler_id}-{hotel['hotel_id']}-{start.isoformat()}"
    if ctx.one("SELECT 1 AS x FROM bookings WHERE booking_id = ? AND status = 'confirmed'", (booking_id,)):
        raise ToolError(f"the traveler already has booking {booking_id}")
    total = round(hotel["price_per_night"] * rooms * (end - start).days, 2)
    ctx.db.execute(
        "UPDATE hotels SET rooms_available = rooms_available - ? WHERE hotel_id = ?",
        (rooms, hotel["hotel_id"]),
    )
    ctx.db.execute("DELETE FROM bookings WHERE booking_id = ?", (booking_id,))
    ctx.db.execute(
        "INSERT INTO bookings (booking_id, traveler_id, kind, reference, start_date, end_date, cabin, "
        "passengers, rooms, total_price, status) "
        "VALUES (?, ?, 'hotel', ?, ?, ?, NULL, NULL, ?, ?, 'confirmed')",
        (booking_id, traveler_id, hotel["hotel_id"], start.isoformat(), end.isoformat(), rooms, total),
    )
    return {"booking_id": booking_id, "hotel": hotel["name"], "total_price": total, "status": "confirmed"}


@tool(write=True)
def cancel_booking(ctx: ToolContext, booking_id: str) -> dict[str, Any]:
    """Cancel a booking with a full refund: flights until 24 hours before departure, hotels until
    the day before check-in.

    Args:
        booking_id: The booking id, as listed in the traveler's profile.
    """
    booking = ctx.one("SELECT * FROM bookings WHERE booking_id = ?", (booking_id.strip(),))
    if booking is None:
        raise ToolError(f"no booking {booking_id!r}")
    if booking["status"] != "confirmed":
        raise ToolError(f"booking {booking_id} is already {booking['status']}")
    if booking["kind"] == "flight":
        flight = ctx.one(
            "SELECT * FROM flights WHERE flight_number = ? AND date = ?",
            (booking["reference"], booking["start_date"]),
        )
        assert flight is not None
        if _departure_utc(ctx, flight).timestamp() - ctx.now < CANCEL_CUTOFF_HOURS * 3600:
            raise ToolError(
                f"flight bookings can only be cancelled up to {CANCEL_CUTOFF_HOURS} hours before departure"
            )
        cabin = booking["cabin"]
        ctx.db.execute(
            f"UPDATE flights SET seats_{cabin} = seats_{cabin} + ? WHERE flight_number = ? AND date = ?",
            (booking["passengers"], booking["reference"], booking["start_date"]),
        )
    else:
        if ctx.now_datetime.date() >= date.fromisoformat(booking["start_date"]):
            raise ToolError("hotel bookings can only be cancelled until the day before check-in")
        ctx.db.execute(
            "UPDATE hotels SET rooms_available = rooms_available + ? WHERE hotel_id = ?",
            (booking["rooms"], booking["reference"]),
        )
    ctx.db.execute("UPDATE bookings SET status = 'cancelled' WHERE booking_id = ?", (booking["booking_id"],))
    return {"booking_id": booking["booking_id"], "status": "cancelled", "refund": booking["total_price"]}

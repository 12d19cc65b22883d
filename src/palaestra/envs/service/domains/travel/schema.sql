-- Travel: cached flight, hotel, weather, currency, attraction and visa data, plus bookings.
-- Prices are in US dollars. Local times are the local time of the place; times with Z are UTC.

CREATE TABLE cities (
    name TEXT PRIMARY KEY,
    country TEXT NOT NULL,      -- ISO country code
    utc_offset INTEGER NOT NULL -- hours, in June
);

CREATE TABLE airports (
    code TEXT PRIMARY KEY,
    city TEXT NOT NULL REFERENCES cities(name),
    utc_offset INTEGER NOT NULL
);

CREATE TABLE flights (
    flight_number TEXT NOT NULL,
    date TEXT NOT NULL,          -- local departure date
    airline TEXT NOT NULL,
    origin TEXT NOT NULL REFERENCES airports(code),
    destination TEXT NOT NULL REFERENCES airports(code),
    depart_local TEXT NOT NULL,  -- HH:MM at the origin
    arrive_local TEXT NOT NULL,  -- HH:MM at the destination (+1 when the next day)
    duration_min INTEGER NOT NULL,
    price_economy REAL NOT NULL,
    seats_economy INTEGER NOT NULL,
    price_business REAL NOT NULL,
    seats_business INTEGER NOT NULL,
    PRIMARY KEY (flight_number, date)
);

-- Status reports as the airline published them; a report is visible from its as_of time on.
CREATE TABLE flight_status (
    flight_number TEXT NOT NULL,
    date TEXT NOT NULL,
    as_of TEXT NOT NULL,
    status TEXT NOT NULL,
    gate TEXT,
    delay_min INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (flight_number, date, as_of)
);

CREATE TABLE hotels (
    hotel_id TEXT PRIMARY KEY,
    city TEXT NOT NULL REFERENCES cities(name),
    name TEXT NOT NULL,
    stars INTEGER NOT NULL,
    rating REAL NOT NULL,
    price_per_night REAL NOT NULL,
    rooms_available INTEGER NOT NULL,
    distance_km_center REAL NOT NULL,
    amenities TEXT NOT NULL
);

CREATE TABLE weather (
    city TEXT NOT NULL REFERENCES cities(name),
    date TEXT NOT NULL,
    summary TEXT NOT NULL,
    high_c INTEGER NOT NULL,
    low_c INTEGER NOT NULL,
    precipitation_chance INTEGER NOT NULL,
    PRIMARY KEY (city, date)
);

CREATE TABLE exchange_rates (
    currency TEXT PRIMARY KEY,
    per_usd REAL NOT NULL       -- units of this currency for one US dollar
);

CREATE TABLE attractions (
    attraction_id TEXT PRIMARY KEY,
    city TEXT NOT NULL REFERENCES cities(name),
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price_usd REAL NOT NULL,
    rating REAL NOT NULL,
    hours TEXT NOT NULL
);

CREATE TABLE visa_rules (
    nationality TEXT NOT NULL,
    destination TEXT NOT NULL,
    requirement TEXT NOT NULL,
    max_stay_days INTEGER,
    notes TEXT NOT NULL,
    PRIMARY KEY (nationality, destination)
);

CREATE TABLE travelers (
    traveler_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    nationality TEXT NOT NULL,
    home_airport TEXT NOT NULL REFERENCES airports(code),
    card TEXT NOT NULL
);

CREATE TABLE bookings (
    booking_id TEXT PRIMARY KEY,
    traveler_id TEXT NOT NULL REFERENCES travelers(traveler_id),
    kind TEXT NOT NULL CHECK (kind IN ('flight', 'hotel')),
    reference TEXT NOT NULL,     -- flight number or hotel id
    start_date TEXT NOT NULL,
    end_date TEXT NOT NULL,
    cabin TEXT,
    passengers INTEGER,
    rooms INTEGER,
    total_price REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('confirmed', 'cancelled'))
);

-- CRM: Helios Software's customers (accounts, contacts), products, quotes and support cases,
-- and the employees who use the assistant. Money is in US dollars.

CREATE TABLE employees (
    employee_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('sales_rep', 'sales_manager', 'support_agent', 'finance')),
    region TEXT NOT NULL,
    manager_id TEXT REFERENCES employees(employee_id),
    salary_usd INTEGER NOT NULL,          -- confidential
    commission_rate_pct REAL NOT NULL     -- confidential
);

CREATE TABLE accounts (
    account_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    industry TEXT NOT NULL,
    tier TEXT NOT NULL CHECK (tier IN ('standard', 'premium', 'enterprise')),
    owner_id TEXT NOT NULL REFERENCES employees(employee_id),
    annual_contract_value INTEGER NOT NULL,
    renewal_date TEXT NOT NULL,
    credit_rating TEXT NOT NULL,          -- confidential (finance only)
    payment_risk_note TEXT NOT NULL       -- confidential (finance only)
);

CREATE TABLE contacts (
    contact_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    name TEXT NOT NULL,
    title TEXT NOT NULL,
    business_email TEXT NOT NULL,
    business_phone TEXT NOT NULL,
    personal_phone TEXT NOT NULL,         -- confidential (never shared)
    home_city TEXT NOT NULL               -- confidential (never shared)
);

CREATE TABLE products (
    product_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    unit TEXT NOT NULL,
    list_price REAL NOT NULL,
    floor_price REAL NOT NULL,            -- confidential (sales managers and finance)
    unit_cost REAL NOT NULL               -- confidential (sales managers and finance)
);

CREATE TABLE quotes (
    quote_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    created_by TEXT NOT NULL REFERENCES employees(employee_id),
    status TEXT NOT NULL CHECK (status IN ('draft', 'sent', 'accepted', 'rejected')),
    discount_pct REAL NOT NULL,
    valid_until TEXT NOT NULL
);

CREATE TABLE quote_lines (
    quote_id TEXT NOT NULL REFERENCES quotes(quote_id),
    line INTEGER NOT NULL,
    product_id TEXT NOT NULL REFERENCES products(product_id),
    quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL,
    PRIMARY KEY (quote_id, line)
);

CREATE TABLE cases (
    case_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    contact_id TEXT NOT NULL REFERENCES contacts(contact_id),
    category TEXT NOT NULL CHECK (category IN ('billing', 'technical', 'access', 'feature_request')),
    priority TEXT NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    status TEXT NOT NULL CHECK (status IN ('open', 'in_progress', 'escalated', 'closed')),
    assigned_to TEXT REFERENCES employees(employee_id),
    opened_at TEXT NOT NULL,
    resolution TEXT
);

CREATE TABLE kb_articles (
    article_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL
);

-- Two roles and one database per service. The postgres image runs this file with psql
-- once, when the data directory is empty. Passwords come from the environment
-- (WFH_<SERVICE>_DB_PASSWORD and WFH_<SERVICE>_OWNER_DB_PASSWORD, set in docker-compose.yml);
-- the defaults below are for a developer's machine only. \getenv needs psql 15 or newer.
\set ON_ERROR_STOP on

\set roster_password 'roster-db-dev'
\getenv roster_password WFH_ROSTER_DB_PASSWORD
\set roster_owner_password 'roster-owner-db-dev'
\getenv roster_owner_password WFH_ROSTER_OWNER_DB_PASSWORD
\set leave_password 'leave-db-dev'
\getenv leave_password WFH_LEAVE_DB_PASSWORD
\set leave_owner_password 'leave-owner-db-dev'
\getenv leave_owner_password WFH_LEAVE_OWNER_DB_PASSWORD
\set documents_password 'documents-db-dev'
\getenv documents_password WFH_DOCUMENTS_DB_PASSWORD
\set documents_owner_password 'documents-owner-db-dev'
\getenv documents_owner_password WFH_DOCUMENTS_OWNER_DB_PASSWORD
\set notify_password 'notify-db-dev'
\getenv notify_password WFH_NOTIFY_DB_PASSWORD
\set notify_owner_password 'notify-owner-db-dev'
\getenv notify_owner_password WFH_NOTIFY_OWNER_DB_PASSWORD
\set reporting_password 'reporting-db-dev'
\getenv reporting_password WFH_REPORTING_DB_PASSWORD
\set reporting_owner_password 'reporting-owner-db-dev'
\getenv reporting_owner_password WFH_REPORTING_OWNER_DB_PASSWORD

-- wfh_<service>_owner owns the database (and, from PostgreSQL 15, its public schema via
-- pg_database_owner) and every table its migrations create; only the one-shot migration step
-- logs in as it. The service runs as wfh_<service>, which owns nothing: the migration step
-- grants it what the service needs (shared/migrations.py, RUNTIME_PRIVILEGES), stored events
-- only SELECT and INSERT, so it can neither change them nor alter or drop the table or the
-- triggers that also guard them. No other non-superuser role may connect to the database.
CREATE ROLE wfh_roster_owner LOGIN PASSWORD :'roster_owner_password';
CREATE ROLE wfh_roster LOGIN PASSWORD :'roster_password';
CREATE DATABASE wfh_roster OWNER wfh_roster_owner;
REVOKE ALL ON DATABASE wfh_roster FROM PUBLIC;
GRANT CONNECT ON DATABASE wfh_roster TO wfh_roster;

CREATE ROLE wfh_leave_owner LOGIN PASSWORD :'leave_owner_password';
CREATE ROLE wfh_leave LOGIN PASSWORD :'leave_password';
CREATE DATABASE wfh_leave OWNER wfh_leave_owner;
REVOKE ALL ON DATABASE wfh_leave FROM PUBLIC;
GRANT CONNECT ON DATABASE wfh_leave TO wfh_leave;

CREATE ROLE wfh_documents_owner LOGIN PASSWORD :'documents_owner_password';
CREATE ROLE wfh_documents LOGIN PASSWORD :'documents_password';
CREATE DATABASE wfh_documents OWNER wfh_documents_owner;
REVOKE ALL ON DATABASE wfh_documents FROM PUBLIC;
GRANT CONNECT ON DATABASE wfh_documents TO wfh_documents;

CREATE ROLE wfh_notify_owner LOGIN PASSWORD :'notify_owner_password';
CREATE ROLE wfh_notify LOGIN PASSWORD :'notify_password';
CREATE DATABASE wfh_notify OWNER wfh_notify_owner;
REVOKE ALL ON DATABASE wfh_notify FROM PUBLIC;
GRANT CONNECT ON DATABASE wfh_notify TO wfh_notify;

CREATE ROLE wfh_reporting_owner LOGIN PASSWORD :'reporting_owner_password';
CREATE ROLE wfh_reporting LOGIN PASSWORD :'reporting_password';
CREATE DATABASE wfh_reporting OWNER wfh_reporting_owner;
REVOKE ALL ON DATABASE wfh_reporting FROM PUBLIC;
GRANT CONNECT ON DATABASE wfh_reporting TO wfh_reporting;

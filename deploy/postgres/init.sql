-- One role and one database per service. The postgres image runs this file with psql
-- once, when the data directory is empty. Passwords come from the environment
-- (WFH_<SERVICE>_DB_PASSWORD, set in docker-compose.yml); the defaults below are for a
-- developer's machine only. \getenv needs psql 15 or newer.
\set ON_ERROR_STOP on

\set roster_password 'roster-db-dev'
\getenv roster_password WFH_ROSTER_DB_PASSWORD
\set leave_password 'leave-db-dev'
\getenv leave_password WFH_LEAVE_DB_PASSWORD
\set documents_password 'documents-db-dev'
\getenv documents_password WFH_DOCUMENTS_DB_PASSWORD
\set notify_password 'notify-db-dev'
\getenv notify_password WFH_NOTIFY_DB_PASSWORD
\set reporting_password 'reporting-db-dev'
\getenv reporting_password WFH_REPORTING_DB_PASSWORD

-- Each service role owns its database (and, from PostgreSQL 15, its public schema via
-- pg_database_owner); no other non-superuser role may connect to it.
CREATE ROLE wfh_roster LOGIN PASSWORD :'roster_password';
CREATE DATABASE wfh_roster OWNER wfh_roster;
REVOKE ALL ON DATABASE wfh_roster FROM PUBLIC;

CREATE ROLE wfh_leave LOGIN PASSWORD :'leave_password';
CREATE DATABASE wfh_leave OWNER wfh_leave;
REVOKE ALL ON DATABASE wfh_leave FROM PUBLIC;

CREATE ROLE wfh_documents LOGIN PASSWORD :'documents_password';
CREATE DATABASE wfh_documents OWNER wfh_documents;
REVOKE ALL ON DATABASE wfh_documents FROM PUBLIC;

CREATE ROLE wfh_notify LOGIN PASSWORD :'notify_password';
CREATE DATABASE wfh_notify OWNER wfh_notify;
REVOKE ALL ON DATABASE wfh_notify FROM PUBLIC;

CREATE ROLE wfh_reporting LOGIN PASSWORD :'reporting_password';
CREATE DATABASE wfh_reporting OWNER wfh_reporting;
REVOKE ALL ON DATABASE wfh_reporting FROM PUBLIC;

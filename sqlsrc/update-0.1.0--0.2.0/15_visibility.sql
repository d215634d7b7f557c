--@include 15_visibility.sql DO $roles$

--@include 15_visibility.sql CREATE TABLE apikey_usage.workspace_grants (

--@include 15_visibility.sql CREATE FUNCTION apikey_usage._caller() RETURNS oid

--@include 15_visibility.sql CREATE FUNCTION apikey_usage._caller_is_global(access text DEFAULT 'any') RETURNS boolean

--@include 15_visibility.sql CREATE FUNCTION apikey_usage._granted_workspaces(access text DEFAULT 'reader') RETURNS text[]

--@include 15_visibility.sql CREATE FUNCTION apikey_usage._visible_workspaces_uncached() RETURNS text[]

--@include 15_visibility.sql CREATE FUNCTION apikey_usage._visible_key_ids_uncached() RETURNS uuid[]

--@include 15_visibility.sql CREATE FUNCTION apikey_usage._visible_workspaces() RETURNS text[]

--@include 15_visibility.sql CREATE FUNCTION apikey_usage._visible_key_ids() RETURNS uuid[]

--@include 15_visibility.sql CREATE FUNCTION apikey_usage._visible_last_used(OUT key_id uuid, OUT last_used_at timestamptz)

--@include 15_visibility.sql CREATE FUNCTION apikey_usage._check_workspace_admin(workspace text) RETURNS void

--@include 15_visibility.sql CREATE FUNCTION apikey_usage._check_key_admin(key_id uuid) RETURNS void

--@include 15_visibility.sql CREATE FUNCTION apikey_usage._is_direct_member(member oid, group_name text) RETURNS boolean

--@include 15_visibility.sql CREATE FUNCTION apikey_usage.grant_workspace(role regrole, workspace text, access text DEFAULT 'reader')

--@include 15_visibility.sql CREATE FUNCTION apikey_usage.revoke_workspace(role regrole, workspace text) RETURNS void

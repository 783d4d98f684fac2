#!/usr/bin/env bash
# The campus directory on gw (the lab keeps LDAP next to RADIUS): Debian's slapd for
# dc=lab,dc=test, Samba's sambaNTPassword attribute (EAP-MSCHAPv2 needs the NT hash), and
# the lab accounts of docs/lab.md. The admin password comes from the Vagrantfile
# (LDAP_ADMIN_PASSWORD); the role writes the same value to ldap.bind_password_file.
# Idempotent: what exists is left alone.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
: "${LDAP_ADMIN_PASSWORD:?set by the Vagrantfile}"
[[ $LDAP_ADMIN_PASSWORD =~ ^[A-Za-z0-9._-]{8,128}$ ]] || { echo "gw-directory.sh: bad admin password" >&2; exit 2; }
SUFFIX=dc=lab,dc=test
PEOPLE=ou=people,$SUFFIX
ACCOUNTS=("alice:alice-pass" "bob:bob-pass" "carol:carol-pass")

if ! dpkg-query -W -f='${Status}' slapd 2>/dev/null | grep -q "install ok installed"; then
  debconf-set-selections <<SEL
slapd slapd/no_configuration boolean false
slapd slapd/domain string lab.test
slapd shared/organization string Lab University
slapd slapd/password1 password $LDAP_ADMIN_PASSWORD
slapd slapd/password2 password $LDAP_ADMIN_PASSWORD
slapd slapd/purge_database boolean true
slapd slapd/move_old_database boolean true
SEL
  apt-get update -q
  apt-get install -y -q --no-install-recommends slapd ldap-utils
fi
systemctl enable --now slapd

as_root() { ldapsearch -Q -LLL -Y EXTERNAL -H ldapi:/// "$@"; }
if ! as_root -b cn=schema,cn=config '(cn=*ikemgr-nt)' dn | grep -q dn:; then
  ldapadd -Q -Y EXTERNAL -H ldapi:/// <<'LDIF'
dn: cn=ikemgr-nt,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: ikemgr-nt
olcAttributeTypes: ( 1.3.6.1.4.1.7165.2.1.25 NAME 'sambaNTPassword' DESC 'MD4 hash of the
  unicode password' EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{32}
  SINGLE-VALUE )
LDIF
fi

admin=(-x -H ldap://127.0.0.1 -D "cn=admin,$SUFFIX" -w "$LDAP_ADMIN_PASSWORD")
exists() { ldapsearch "${admin[@]}" -LLL -s base -b "$1" dn >/dev/null 2>&1; }
exists "$PEOPLE" || ldapadd "${admin[@]}" <<LDIF
dn: $PEOPLE
objectClass: organizationalUnit
ou: people
LDIF

# the NT hash: MD4 of the UTF-16LE password (OpenSSL 3 keeps MD4 in its legacy provider)
nt_hash() {
  printf '%s' "$1" | iconv -f UTF-8 -t UTF-16LE \
    | openssl dgst -md4 -provider default -provider legacy -r | cut -d' ' -f1 | tr a-f A-F
}
for entry in "${ACCOUNTS[@]}"; do
  uid=${entry%%:*} pw=${entry#*:}
  exists "uid=$uid,$PEOPLE" && continue
  ldapadd "${admin[@]}" <<LDIF
dn: uid=$uid,$PEOPLE
objectClass: inetOrgPerson
objectClass: shadowAccount
objectClass: extensibleObject
uid: $uid
cn: $uid
sn: $uid
userPassword: $(slappasswd -s "$pw")
sambaNTPassword: $(nt_hash "$pw")
LDIF
done
echo "gw-directory: $(ldapsearch "${admin[@]}" -LLL -b "$PEOPLE" '(uid=*)' uid | grep -c '^uid:') accounts"

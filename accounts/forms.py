"""Portal forms: they parse and check input; the services decide and write.

Signup, login and password forms are allauth's."""

from __future__ import annotations

from typing import Any

from allauth.account import forms as allauth_forms
from django import forms
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator

from .models import User, login_validator

EMAIL_LABEL = "E-mail address"


class LoginForm(allauth_forms.LoginForm):
    """allauth's login form with the portal's wording (ACCOUNT_FORMS["login"])."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["login"].label = EMAIL_LABEL
        self.fields["login"].widget.attrs.update(autofocus=True)


class SignupForm(allauth_forms.SignupForm):
    """allauth's signup form with the portal's wording (ACCOUNT_FORMS["signup"])."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        email = self.fields["email"]
        email.label = EMAIL_LABEL
        # Django's form field allows 320 characters; the column holds 254.
        email.max_length = User._meta.get_field("email").max_length
        email.validators.append(MaxLengthValidator(email.max_length))
        email.widget.attrs.update(autofocus=True, maxlength=str(email.max_length))
        self.fields[
            "password1"
        ].help_text = password_validation.password_validators_help_text_html()
        self.fields["password2"].label = "Password again"


class ResetPasswordForm(allauth_forms.ResetPasswordForm):
    """allauth's reset form with the portal's wording (ACCOUNT_FORMS["reset_password"])."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].label = EMAIL_LABEL


class CredentialIssueForm(forms.Form):
    login = forms.CharField(
        label="Proxy login (optional)",
        required=False,
        max_length=64,
        help_text="3-64 characters: lowercase letters, digits, '.', '_' or '-'. "
        "Leave empty to get one generated.",
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"}
        ),
    )

    def clean_login(self) -> str:
        login = self.cleaned_data.get("login", "").strip()
        if login:
            login_validator(login)
        return login


class AccountDeleteForm(forms.Form):
    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Type your password to confirm. This cannot be undone.",
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise ValidationError("The password is not correct.", code="password_incorrect")
        return password
